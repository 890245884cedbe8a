"""Packing quantized weights into the two int32 layouts the ecosystem reads.

AutoAWQ "GEMM" (quant_method awq, version gemm), 4 bits only:
    qweight int32 [in, out / 8]   codes packed along `out`, 8 per word, in AWQ's interleaved
                                  nibble order: nibble i of word c holds column 8c + ORDER[i]
    qzeros  int32 [groups, out / 8]  zero points, same packing and order
    scales  fp16  [groups, out]
    dequantised weight: (q - z) * s, group of input row i = i // group_size

GPTQ (quant_method gptq, checkpoint_format "gptq", i.e. AutoGPTQ's "v1"):
    qweight int32 [in * bits / 32, out]  codes packed along `in`, sequentially (value j of a
                                         word sits at bits * j)
    qzeros  int32 [groups, out * bits / 32]  (z - 1) packed along `out`, sequentially: the
                                         v1 format stores zero points minus one, and readers
                                         add the one back (masking to `bits` bits)
    scales  fp16  [groups, out]
    g_idx   int32 [in]  the group of every input row (act-order makes it non-monotone;
                        ceil(in / group_size) groups hold a short last group)

Both are cross-checked in the tests against the unpacking code of the ORT GenAI model
builder's quantized-model loaders.
"""

from __future__ import annotations

import torch

from olivepress.errors import OlivepressError
from olivepress.quant.grid import QuantizedWeight

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble i of an AWQ word holds column ORDER[i]
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)  # column j sits in nibble REVERSE_ORDER[j]


def _per_word(bits: int) -> int:
    if 32 % bits:
        raise OlivepressError(f"{bits}-bit codes do not pack evenly into int32 words; use 2, 4 or 8 bits")
    return 32 // bits


def pack_int32(values: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Pack unsigned `bits`-bit integers along `dim` of a 2-D tensor, value j of a word at bit
    bits * j. The size of `dim` must be a multiple of 32 / bits."""
    per_word = _per_word(bits)
    v = values.to(torch.int64)
    if dim == 0:
        v = v.T
    rows, cols = v.shape
    if cols % per_word:
        raise ValueError(f"cannot pack {cols} values into whole words of {per_word}")
    v = (v & (2**bits - 1)).reshape(rows, cols // per_word, per_word)
    shifts = torch.arange(0, 32, bits, dtype=torch.int64)
    words = (v << shifts).sum(dim=-1)  # disjoint bit fields: sum == bitwise or
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    return words.T.contiguous() if dim == 0 else words


def unpack_int32(words: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """The inverse of pack_int32: int32 words -> unsigned values (int32), unpacked along `dim`."""
    per_word = _per_word(bits)
    w = words.to(torch.int64) & 0xFFFFFFFF
    if dim == 0:
        w = w.T
    shifts = torch.arange(0, 32, bits, dtype=torch.int64)
    v = (w.unsqueeze(-1) >> shifts) & (2**bits - 1)
    v = v.reshape(w.shape[0], w.shape[1] * per_word).to(torch.int32)
    return v.T.contiguous() if dim == 0 else v


def _awq_interleave(values: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    rows, cols = values.shape
    return values.reshape(rows, cols // 8, 8)[:, :, list(order)].reshape(rows, cols)


def pack_awq(q: QuantizedWeight) -> dict[str, torch.Tensor]:
    """qweight / qzeros / scales in the AutoAWQ GEMM layout (4 bits, groups contiguous)."""
    if q.bits != 4:
        raise OlivepressError(
            f"the AWQ GEMM layout holds 4-bit weights only, not {q.bits}-bit; use the GPTQ layout"
        )
    if q.out_features % 8:
        raise OlivepressError(f"the AWQ layout needs out_features divisible by 8, got {q.out_features}")
    codes_in_out = q.codes.T.contiguous()  # [in, out]
    return {
        "qweight": pack_int32(_awq_interleave(codes_in_out, AWQ_ORDER), 4, dim=1),
        "qzeros": pack_int32(_awq_interleave(q.zeros.T.contiguous(), AWQ_ORDER), 4, dim=1),
        "scales": q.scales.T.contiguous().half(),
    }


def unpack_awq(
    qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group_size: int, bits: int = 4
) -> QuantizedWeight:
    if bits != 4:
        raise OlivepressError(f"the AWQ GEMM layout holds 4-bit weights only, not {bits}-bit")
    codes_in_out = _awq_interleave(unpack_int32(qweight, 4, dim=1), AWQ_REVERSE_ORDER)
    zeros = _awq_interleave(unpack_int32(qzeros, 4, dim=1), AWQ_REVERSE_ORDER)
    in_features = codes_in_out.shape[0]
    columns = in_features if group_size == -1 else group_size
    g_idx = (torch.arange(in_features) // columns).to(torch.int32)
    if int(g_idx[-1]) + 1 != scales.shape[0]:
        raise OlivepressError(
            f"AWQ tensors do not fit together: {in_features} inputs in groups of {columns} "
            f"need {int(g_idx[-1]) + 1} scale rows, found {scales.shape[0]}"
        )
    return QuantizedWeight(
        codes=codes_in_out.T.contiguous(),
        scales=scales.float().T.contiguous(),
        zeros=zeros.T.contiguous(),
        g_idx=g_idx,
        bits=4,
        group_size=group_size,
    )


def pack_gptq(q: QuantizedWeight) -> dict[str, torch.Tensor]:
    """qweight / qzeros / scales / g_idx in the GPTQ (v1) layout."""
    per_word = _per_word(q.bits)
    if q.in_features % per_word or q.out_features % per_word:
        raise OlivepressError(
            f"the GPTQ layout packs {per_word} codes per word, so in_features and out_features must be "
            f"multiples of {per_word}; got {q.in_features} x {q.out_features}"
        )
    stored_zeros = (q.zeros - 1) & (2**q.bits - 1)  # v1: zero point minus one, wrapped to `bits` bits
    return {
        "qweight": pack_int32(q.codes.T.contiguous(), q.bits, dim=0),
        "qzeros": pack_int32(stored_zeros.T.contiguous(), q.bits, dim=1),
        "scales": q.scales.T.contiguous().half(),
        "g_idx": q.g_idx.to(torch.int32),
    }


def unpack_gptq(
    qweight: torch.Tensor,
    qzeros: torch.Tensor,
    scales: torch.Tensor,
    g_idx: torch.Tensor,
    bits: int,
    group_size: int,
) -> QuantizedWeight:
    codes_in_out = unpack_int32(qweight, bits, dim=0)
    zeros = (unpack_int32(qzeros, bits, dim=1) + 1) & (2**bits - 1)
    return QuantizedWeight(
        codes=codes_in_out.T.contiguous(),
        scales=scales.float().T.contiguous(),
        zeros=zeros[:, : scales.shape[1]].T.contiguous(),
        g_idx=g_idx.to(torch.int32),
        bits=bits,
        group_size=group_size,
    )

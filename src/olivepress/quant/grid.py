"""Integer grids for weight-only quantization, one (scale, zero) pair per group of inputs.

A Linear weight W [out, in] is cut along `in` into groups of `group_size` columns (-1: one
group per output row). Each (row, group) gets a scale s (stored as fp16) and an integer zero
point z, and every weight becomes an unsigned code

    q = clamp(round(w / s) + z, 0, 2**bits - 1)        w ≈ (q - z) * s

Asymmetric grids take s and z from the group's min and max (AutoAWQ's pseudo_quantize);
symmetric grids fix z = 2**(bits-1) and take s from max|w| (the reference GPTQ quantizer).

When `in` is not a multiple of the group size the last group is short (ceil(in / G) groups):
the math here is the same for every group, whether a checkpoint layout can hold that is the
writer's business (see layout.py).

Scales are rounded to fp16 *before* the codes are computed, so (q - z) * s in float32 is
exactly the weight that a checkpoint with fp16 scales dequantises to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from olivepress.errors import OlivepressError

SUPPORTED_BITS = (2, 3, 4, 8)
_FP16_TINY = 2.0**-24  # smallest positive fp16 (subnormal); a scale must not round to 0


@dataclass(frozen=True)
class Grid:
    """How one Linear is quantized: bits, group size along the input dim, zero point or not."""

    bits: int = 4
    group_size: int = 128
    sym: bool = False

    def __post_init__(self) -> None:
        if self.bits not in SUPPORTED_BITS:
            raise OlivepressError(f"bits={self.bits} is not supported; use one of {SUPPORTED_BITS}")
        if self.group_size != -1 and self.group_size <= 0:
            raise OlivepressError(f"group_size={self.group_size} must be positive or -1 (one group per row)")

    @property
    def maxq(self) -> int:
        return 2**self.bits - 1

    def columns_per_group(self, in_features: int) -> int:
        """The group size in columns; -1 (and a size at least in_features) means one group per row."""
        return in_features if self.group_size == -1 else min(self.group_size, in_features)

    def num_groups(self, in_features: int) -> int:
        return math.ceil(in_features / self.columns_per_group(in_features))

    def g_idx(self, in_features: int) -> torch.Tensor:
        """The group of every input column, [in] int32 (GPTQ's g_idx without act-order)."""
        return group_index(in_features, self.columns_per_group(in_features))


def group_index(in_features: int, group_size: int) -> torch.Tensor:
    return (torch.arange(in_features) // group_size).to(torch.int32)


@dataclass
class QuantizedWeight:
    """A quantized Linear weight in torch orientation: codes [out, in], scales/zeros [out, groups].

    `g_idx[i]` is the group of input column i; it is arange(in) // group_size unless GPTQ
    quantized the columns in act-order.
    """

    codes: torch.Tensor  # int32 in [0, 2**bits - 1]
    scales: torch.Tensor  # float32 holding fp16 values
    zeros: torch.Tensor  # int32 in [0, 2**bits - 1]
    g_idx: torch.Tensor  # int32 [in]
    bits: int
    group_size: int  # columns per group as written in a checkpoint config (-1: one group)

    @property
    def out_features(self) -> int:
        return self.codes.shape[0]

    @property
    def in_features(self) -> int:
        return self.codes.shape[1]

    def dequantize(self) -> torch.Tensor:
        return dequantize(self.codes, self.scales, self.zeros, self.g_idx)


def _grouped(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """W [out, in] as [out, groups, group_size]; a short last group is padded by repeating its
    last column, which leaves the group's min and max unchanged."""
    out_features, in_features = w.shape
    pad = -in_features % group_size
    if pad:
        w = torch.cat([w, w[:, -1:].expand(out_features, pad)], dim=1)
    return w.reshape(out_features, -1, group_size)


def _fp16_scales(scales: torch.Tensor) -> torch.Tensor:
    return scales.clamp(min=_FP16_TINY).half().float().clamp(min=_FP16_TINY)


def params_from_range(
    w_min: torch.Tensor, w_max: torch.Tensor, grid: Grid
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scales (fp16 values in float32) and integer zeros for groups spanning [w_min, w_max]."""
    if grid.sym:
        amax = torch.maximum(w_min.abs(), w_max.abs())
        # GPTQ's symmetric grid: 2**bits levels centred on z = 2**(bits-1), step 2*max|w|/maxq.
        scales = _fp16_scales(2 * amax / grid.maxq)
        zeros = torch.full_like(scales, 2 ** (grid.bits - 1), dtype=torch.int32)
    else:
        scales = _fp16_scales((w_max - w_min).clamp(min=1e-5) / grid.maxq)
        zeros = (-torch.round(w_min / scales)).clamp(0, grid.maxq).to(torch.int32)
    return scales, zeros


def minmax_params(w: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (row, group) scales and zeros from the group's own min and max; [out, groups] each."""
    grouped = _grouped(w.float(), grid.columns_per_group(w.shape[1]))
    return params_from_range(grouped.amin(dim=-1), grouped.amax(dim=-1), grid)


def quantize(
    w: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, g_idx: torch.Tensor, bits: int
) -> torch.Tensor:
    """Codes [out, in] for W on the grid given by per-group scales/zeros and the column groups."""
    g = g_idx.long()
    q = torch.round(w.float() / scales[:, g]) + zeros[:, g]
    return q.clamp(0, 2**bits - 1).to(torch.int32)


def dequantize(
    codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, g_idx: torch.Tensor
) -> torch.Tensor:
    """(q - z) * s, float32 [out, in]; exact, since |q - z| < 2**8 and s has an 11-bit mantissa."""
    g = g_idx.long()
    return (codes - zeros[:, g]).float() * scales[:, g]


def quantize_weight(w: torch.Tensor, grid: Grid) -> QuantizedWeight:
    """Round to nearest on the min/max grid: the RTN baseline and the last step of AWQ."""
    scales, zeros = minmax_params(w, grid)
    g_idx = grid.g_idx(w.shape[1])
    codes = quantize(w, scales, zeros, g_idx, grid.bits)
    return QuantizedWeight(codes, scales, zeros, g_idx, grid.bits, grid.group_size)


def grouped_columns(w: torch.Tensor, grid: Grid) -> torch.Tensor:
    """W [out, in] as [out, groups, columns_per_group], a short last group padded with copies
    of its last column (so that its min and max do not change)."""
    return _grouped(w.float(), grid.columns_per_group(w.shape[1]))


def fake_quantize_groups(groups: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Every row of the last dim is one group: round it onto its own min/max grid and back."""
    low, high = groups.amin(dim=-1, keepdim=True), groups.amax(dim=-1, keepdim=True)
    scales, zeros = params_from_range(low, high, grid)
    # (clamp(round(w/s) + z, 0, maxq) - z) * s, with the zero moved into the clamp bounds:
    # four passes over the weights instead of six (this runs inside the AWQ searches).
    zeros = zeros.float()
    q = groups / scales
    return q.round_().clamp_(-zeros, grid.maxq - zeros).mul_(scales)


def fake_quantize(w: torch.Tensor, grid: Grid) -> torch.Tensor:
    """W [out, in] rounded onto its own min/max grid and back to float (for searches)."""
    out_features, in_features = w.shape
    deq = fake_quantize_groups(grouped_columns(w, grid), grid)
    return deq.reshape(out_features, -1)[:, :in_features]

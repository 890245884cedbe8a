"""Packing in the AutoAWQ GEMM and GPTQ layouts: round trips, the exact bit conventions, and
agreement with the ORT GenAI model builder's own unpacking code."""

from __future__ import annotations

import pytest
import torch

from olivepress.errors import OlivepressError
from olivepress.quant.grid import Grid, quantize_weight
from olivepress.quant.packing import (
    pack_awq,
    pack_gptq,
    pack_int32,
    unpack_awq,
    unpack_gptq,
    unpack_int32,
)


def _quantized(out_features=64, in_features=96, bits=4, group_size=32, seed=0):
    w = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed))
    return quantize_weight(w, Grid(bits=bits, group_size=group_size))


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("dim", [0, 1])
def test_int32_packing_round_trips_including_the_sign_bit(bits, dim):
    values = torch.randint(0, 2**bits, (16, 32), dtype=torch.int32)
    values[0] = 2**bits - 1  # all ones: the top word has its sign bit set
    words = pack_int32(values, bits, dim)
    assert words.dtype == torch.int32
    assert torch.equal(unpack_int32(words, bits, dim), values)


def test_awq_layout_shapes_and_interleaved_order():
    q = _quantized()
    packed = pack_awq(q)
    assert packed["qweight"].shape == (96, 8) and packed["qweight"].dtype == torch.int32
    assert packed["qzeros"].shape == (3, 8) and packed["scales"].shape == (3, 64)
    assert packed["scales"].dtype == torch.float16
    # nibble i of word c holds output column 8c + [0, 2, 4, 6, 1, 3, 5, 7][i]
    word = int(packed["qweight"][5, 0]) & 0xFFFFFFFF
    nibbles = [(word >> (4 * i)) & 0xF for i in range(8)]
    assert nibbles == [int(q.codes[c, 5]) for c in (0, 2, 4, 6, 1, 3, 5, 7)]


def test_awq_round_trip():
    q = _quantized()
    packed = pack_awq(q)
    back = unpack_awq(packed["qweight"], packed["qzeros"], packed["scales"], group_size=32)
    assert torch.equal(back.codes, q.codes) and torch.equal(back.zeros, q.zeros)
    assert torch.equal(back.dequantize(), q.dequantize())


def test_awq_layout_refuses_8_bits():
    with pytest.raises(OlivepressError, match="4-bit"):
        pack_awq(_quantized(bits=8))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_gptq_round_trip(bits):
    q = _quantized(bits=bits)
    packed = pack_gptq(q)
    assert packed["qweight"].shape == (96 * bits // 32, 64)
    assert packed["qzeros"].shape == (3, 64 * bits // 32)
    back = unpack_gptq(packed["qweight"], packed["qzeros"], packed["scales"], packed["g_idx"], bits, 32)
    assert torch.equal(back.codes, q.codes) and torch.equal(back.zeros, q.zeros)
    assert torch.equal(back.dequantize(), q.dequantize())


def test_gptq_stores_zero_points_minus_one():
    q = _quantized()
    q.zeros[:] = 8
    q.zeros[0, 0] = 0  # wraps to 15 in v1 and reads back as 0
    stored = unpack_int32(pack_gptq(q)["qzeros"], 4, dim=1)
    assert int(stored[1, 0]) == 7 and int(stored[0, 0]) == 15
    packed = pack_gptq(q)
    back = unpack_gptq(packed["qweight"], packed["qzeros"], packed["scales"], packed["g_idx"], 4, 32)
    assert torch.equal(back.zeros, q.zeros)


def test_gptq_holds_a_short_last_group():
    q = _quantized(in_features=80, group_size=32)  # 32 + 32 + 16
    packed = pack_gptq(q)
    assert packed["scales"].shape == (3, 64) and packed["g_idx"].tolist() == [0] * 32 + [1] * 32 + [2] * 16
    back = unpack_gptq(packed["qweight"], packed["qzeros"], packed["scales"], packed["g_idx"], 4, 32)
    assert torch.equal(back.dequantize(), q.dequantize())


def test_packing_matches_the_ort_genai_builder_unpackers():
    loaders = pytest.importorskip("onnxruntime_genai.models.loaders.base")
    from onnxruntime_genai.models.loaders.awq import AWQModel
    from onnxruntime_genai.models.loaders.gptq import GPTQModel

    q = _quantized(out_features=64, in_features=256, group_size=128)

    module = loaders.QuantizedTensorModule()
    for key, value in pack_awq(q).items():
        setattr(module, key, value)
    module.bits, module.group_size = 4, 128
    awq = object.__new__(AWQModel)  # only its unpacking methods are used
    awq.set_quantized_tensor_properties(module)
    awq.unpack_qzeros(module)
    awq.unpack_qweight(module)
    assert torch.equal(module.qweight, q.codes.T) and torch.equal(module.qzeros, q.zeros.T)

    module = loaders.QuantizedTensorModule()
    for key, value in pack_gptq(q).items():
        setattr(module, key, value)
    module.bits, module.group_size = 4, 128
    gptq = object.__new__(GPTQModel)
    gptq.set_quantized_tensor_properties(module)
    gptq.prepare_quantized_tensor(module)  # the builder adds the v1 "+1" back here
    gptq.unpack_qzeros(module)
    gptq.unpack_qweight(module)
    assert torch.equal(module.qweight, q.codes.T) and torch.equal(module.qzeros, q.zeros.T)

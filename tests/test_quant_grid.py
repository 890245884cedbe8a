"""Integer grids: quantize / dequantize, short last groups, and the search helpers agreeing
with the final rounding."""

from __future__ import annotations

import pytest
import torch

from olivepress.errors import OlivepressError
from olivepress.quant.grid import (
    Grid,
    dequantize,
    fake_quantize,
    minmax_params,
    quantize,
    quantize_weight,
)


def _weight(out_features: int = 48, in_features: int = 80, seed: int = 0) -> torch.Tensor:
    return torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sym", [False, True])
@pytest.mark.parametrize("group_size", [32, 64, 128, -1])
@pytest.mark.parametrize("bits", [4, 8])
def test_round_trip_error_is_within_one_step(bits, group_size, sym):
    w = _weight()
    grid = Grid(bits=bits, group_size=group_size, sym=sym)
    q = quantize_weight(w, grid)
    assert q.codes.dtype == torch.int32 and int(q.codes.min()) >= 0 and int(q.codes.max()) <= grid.maxq
    assert q.scales.shape == q.zeros.shape == (48, grid.num_groups(80))
    step = q.scales[:, q.g_idx.long()]
    err = (q.dequantize() - w).abs()
    # half a step of rounding, plus at most half a step where the extremes fall off the grid
    # (an integer zero point shifts it; the symmetric grid ends at +7 steps, not +7.5)
    assert bool((err <= step + 1e-6).all())
    assert float(err.mean()) < float(step.mean()) * 0.3


def test_short_last_group_uses_its_own_columns():
    w = _weight(in_features=80)  # groups of 32: 32 + 32 + 16
    grid = Grid(bits=4, group_size=32)
    assert grid.num_groups(80) == 3
    assert grid.g_idx(80).tolist() == [0] * 32 + [1] * 32 + [2] * 16
    scales, zeros = minmax_params(w, grid)
    last_scales, last_zeros = minmax_params(w[:, 64:], Grid(bits=4, group_size=16))
    assert torch.equal(scales[:, 2:], last_scales) and torch.equal(zeros[:, 2:], last_zeros)


def test_group_larger_than_the_row_is_one_short_group():
    grid = Grid(bits=4, group_size=128)
    assert grid.num_groups(64) == 1 and grid.g_idx(64).unique().tolist() == [0]


def test_dequantised_grid_is_a_fixed_point():
    w = _weight()
    q = quantize_weight(w, Grid(bits=4, group_size=32))
    again = quantize(q.dequantize(), q.scales, q.zeros, q.g_idx, 4)
    assert torch.equal(again, q.codes)


def test_scales_are_fp16_values_so_checkpoints_dequantise_exactly():
    q = quantize_weight(_weight(), Grid(bits=4, group_size=32))
    assert torch.equal(q.scales, q.scales.half().float())
    assert torch.equal(dequantize(q.codes, q.scales.half().float(), q.zeros, q.g_idx), q.dequantize())


@pytest.mark.parametrize("group_size", [32, 64, -1])
@pytest.mark.parametrize("sym", [False, True])
def test_fake_quantize_matches_quantize_weight_exactly(group_size, sym):
    # AWQ searches with fake_quantize and writes quantize_weight: they must agree bit for bit.
    w = _weight(in_features=80)
    grid = Grid(bits=4, group_size=group_size, sym=sym)
    assert torch.equal(fake_quantize(w, grid), quantize_weight(w, grid).dequantize())


def test_constant_group_does_not_divide_by_zero():
    w = torch.zeros(8, 32)
    q = quantize_weight(w, Grid(bits=4, group_size=32))
    assert torch.isfinite(q.scales).all() and torch.equal(q.dequantize(), w)


@pytest.mark.parametrize("bits", [1, 5, 16])
def test_unsupported_bits_are_a_clear_error(bits):
    with pytest.raises(OlivepressError, match="bits"):
        Grid(bits=bits)

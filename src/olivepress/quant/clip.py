"""Clipping search: per (row, group), the range of the weights that rounds with the least
output error (llm-awq's auto_clip, scored on the group's Gram matrix instead of on tokens).

For a group g of input columns with inputs X_g [tokens, G], rounding a row's weights w to
q(w) changes that row's output by X_g (q - w), whose energy is

    Δᵀ H_g Δ,   Δ = q(clamp(w, -m, m)) - w,   H_g = X_gᵀ X_g

The search tries m = max|w| · (1 - i / clip_grid) for i < max_shrink · clip_grid and keeps the
best m per (row, group). Clamping trades a little error on the largest weights for a finer
grid on all the others; H_g (over all calibration tokens, computed once) says when it pays.
"""

from __future__ import annotations

import torch

from olivepress.quant.grid import Grid, fake_quantize_groups, grouped_columns

CLIP_GRID = 20  # llm-awq's defaults: shrink in steps of 5% ...
MAX_SHRINK = 0.5  # ... down to 55% of max|w|


def group_gram(x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """H_g = X_gᵀ X_g for every group g of input columns, [groups, G, G]; a short last group's
    padding rows and columns are zero, so padded weights add no error."""
    tokens, in_features = x.shape
    columns = grid.columns_per_group(in_features)
    pad = -in_features % columns
    xg = torch.cat([x, x.new_zeros(tokens, pad)], dim=1).reshape(tokens, -1, columns)
    return torch.einsum("tgi,tgj->gij", xg, xg)


def search_clip(
    w: torch.Tensor,
    gram: torch.Tensor,
    grid: Grid,
    clip_grid: int = CLIP_GRID,
    max_shrink: float = MAX_SHRINK,
) -> torch.Tensor:
    """Per (row, group) clip value max|w|·c minimising Δwᵀ H_g Δw; [out, groups]."""
    groups = grouped_columns(w, grid)  # [out, ng, G]
    org_max = groups.abs().amax(dim=-1, keepdim=True)
    best_err = torch.full(org_max.shape[:2], float("inf"))
    best_max = org_max.squeeze(-1).clone()
    for i in range(int(max_shrink * clip_grid)):
        max_val = org_max * (1 - i / clip_grid)
        clipped = groups.clamp(-max_val, max_val)
        delta = fake_quantize_groups(clipped, grid) - groups
        err = torch.einsum("ogi,gij,ogj->og", delta, gram, delta)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_max = torch.where(better, max_val.squeeze(-1), best_max)
    return best_max


def clip_weight(w: torch.Tensor, max_val: torch.Tensor, grid: Grid) -> torch.Tensor:
    """W with every (row, group) clamped to [-max_val, max_val]."""
    g = grid.g_idx(w.shape[1]).long()
    bound = max_val[:, g]
    return w.clamp(-bound, bound)

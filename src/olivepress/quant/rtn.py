"""Round to nearest: every weight to the nearest point of its group's min/max grid (after an
optional clip per (row, group)). RTN is this alone; AWQ ends with it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from olivepress.quant.clip import clip_weight
from olivepress.quant.grid import Grid, QuantizedWeight, quantize_weight

if TYPE_CHECKING:
    from torch import nn


def round_to_nearest(
    modules: dict[str, nn.Module], grids: dict[str, Grid], clips: dict[str, torch.Tensor] | None = None
) -> dict[str, QuantizedWeight]:
    """Quantize every Linear named in `grids`, clamped first to its `clips` [out, groups] where
    given; each weight becomes its dequantised grid."""
    clips = clips or {}
    result = {}
    with torch.no_grad():
        for name, grid in grids.items():
            weight = modules[name].weight
            w = weight.detach().float()
            if name in clips:
                w = clip_weight(w, clips[name], grid)
            q = quantize_weight(w, grid)
            weight.copy_(q.dequantize())
            result[name] = q
    return result

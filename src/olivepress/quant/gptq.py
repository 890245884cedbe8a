"""GPTQ (Frantar et al., 2022, arXiv:2210.17323), on a CPU.

For a Linear with inputs X, GPTQ rounds W one input column at a time and spreads each
column's rounding error over the columns not yet rounded, so that the layer's output error
‖X Wᵀ − X Qᵀ‖² stays small. With H = 2 XᵀX / T (the Hessian of that error in W) and
U the upper Cholesky factor of H⁻¹, rounding column j gives the update

    err = (w_j − q_j) / U_jj          W[:, j+1:] −= err · U[j, j+1:]

(the optimal-brain-surgeon step). Updates are applied lazily in blocks of `block_size`
columns, and a group's scale and zero are taken from the group's columns as they are when
the group is reached (already corrected for the earlier groups' errors). `desc_act` rounds
the columns in order of decreasing H_jj (the most active inputs first) and records each
column's group in g_idx. `damp_percent` of the mean diagonal is added to H for stability.

This follows the reference implementation (IST-DASLab/gptq, gptq.py: fasterquant), with three
additions for the small calibration sets a CPU run affords (a few thousand tokens, against
the reference's 128 x 2048); docs/benchmarks.md has what each one measured:

- `act_scale` (AWQ + GPTQ): before rounding a decoder layer, AWQ's per-group scale search
  (quant/awq.py; options n_grid, search_tokens, search_rows, duo_scaling) scales up the
  weights of the inputs with large activations and folds 1/s into the op before each group
  (a norm, or v_proj / up_proj), so the float model is unchanged; GPTQ then rounds W·diag(s)
  with the Hessian of the scaled inputs X·diag(1/s). The checkpoint layout is the same; the
  folded scales live in the float norm weights and the earlier Linear's rows;
- `diag_damp`: H ← H + λ·diag(H). With fewer tokens than a few times the input width, the
  off-diagonal of H is noisy, and the updates above fit that noise: error on the calibration
  text drops while error on other text rises. Shrinking H toward its diagonal keeps most of
  the first and removes the second;
- `clip`: a group's range is not its min/max but the clipping search's best range on H's
  block for the group (quant/clip.py, as in AWQ).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from olivepress.cpu import torch_threads
from olivepress.errors import OlivepressError
from olivepress.quant.awq import scale_head, scale_layer
from olivepress.quant.clip import clip_weight, search_clip
from olivepress.quant.grid import Grid, QuantizedWeight, params_from_range

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel

    from olivepress.models.families import Family
    from olivepress.quant.activations import LayerInputs
    from olivepress.quant.calibration import HeadQuantizer, LayerQuantizer
    from olivepress.quant.options import GptqOptions


def hessian(x: torch.Tensor) -> torch.Tensor:
    """H = 2 XᵀX / T for inputs X [T, in]."""
    return 2 * (x.T @ x) / x.shape[0]


def gptq_quantize(
    weight: torch.Tensor,
    h: torch.Tensor,
    grid: Grid,
    *,
    damp_percent: float = 0.01,
    diag_damp: float = 0.0,
    block_size: int = 128,
    desc_act: bool = False,
    clip: bool = False,
) -> QuantizedWeight:
    """Round W [out, in] with GPTQ given its input Hessian H [in, in]."""
    w = weight.detach().float().clone()
    out_features, columns = w.shape
    h = h.double()  # float64 for the Cholesky factorisations; the sweep runs in float32

    dead = torch.diag(h) == 0  # inputs that never fire: their weights do not matter
    h[dead, dead] = 1
    w[:, dead] = 0

    perm = torch.argsort(torch.diag(h), descending=True) if desc_act else torch.arange(columns)
    w, h = w[:, perm], h[perm][:, perm]

    h += torch.diag(diag_damp * torch.diag(h) + damp_percent * torch.mean(torch.diag(h)))
    try:
        u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).float()
    except torch.linalg.LinAlgError as exc:
        raise OlivepressError(
            f"GPTQ's Hessian is not positive definite even with damp_percent={damp_percent}; "
            "raise damp_percent (e.g. 0.1) or use more calibration samples"
        ) from exc

    group = grid.columns_per_group(columns)
    # Groups run along the (possibly permuted) column order; a block holds whole groups.
    block_size = max(block_size // group, 1) * group if group <= block_size else group
    n_groups = grid.num_groups(columns)
    codes = torch.zeros(out_features, columns, dtype=torch.int32)
    scales = torch.zeros(out_features, n_groups)
    zeros = torch.zeros(out_features, n_groups, dtype=torch.int32)

    for b1 in range(0, columns, block_size):
        b2 = min(b1 + block_size, columns)
        w1 = w[:, b1:b2].clone()
        err1 = torch.zeros_like(w1)
        u1 = u[b1:b2, b1:b2]
        # The column sweep is thousands of small ops: one thread each beats opening a parallel
        # region per op; the block update below gets all threads.
        with torch_threads(1):
            for i in range(b2 - b1):
                col = b1 + i
                if col % group == 0:
                    g = col // group
                    cols = w1[:, i : i + group]
                    if clip:  # the group's range from the clipping search on its block of H
                        one_group = Grid(grid.bits, cols.shape[1], grid.sym)
                        h_group = h[col : col + cols.shape[1], col : col + cols.shape[1]].float()[None]
                        cols = clip_weight(cols, search_clip(cols, h_group, one_group), one_group)
                    s, z = params_from_range(cols.amin(dim=1), cols.amax(dim=1), grid)
                    scales[:, g], zeros[:, g] = s, z
                q = (torch.round(w1[:, i] / s) + z).clamp(0, grid.maxq)
                codes[:, col] = q.to(torch.int32)
                err = (w1[:, i] - (q - z) * s) / u1[i, i]
                w1[:, i:] -= err.unsqueeze(1) * u1[i, i:].unsqueeze(0)
                err1[:, i] = err
        w[:, b2:] -= err1 @ u[b1:b2, b2:]

    inverse = torch.argsort(perm)
    g_idx = (torch.arange(columns) // group)[inverse].to(torch.int32)
    return QuantizedWeight(codes[:, inverse].contiguous(), scales, zeros, g_idx, grid.bits, grid.group_size)


def _sweep_options(options: GptqOptions) -> dict[str, Any]:
    return {
        "damp_percent": options.damp_percent,
        "diag_damp": options.diag_damp,
        "block_size": options.block_size,
        "desc_act": options.desc_act,
        "clip": options.clip,
    }


def _rows(q: QuantizedWeight, rows: slice) -> QuantizedWeight:
    return QuantizedWeight(
        q.codes[rows].clone(),
        q.scales[rows].clone(),
        q.zeros[rows].clone(),
        q.g_idx.clone(),
        q.bits,
        q.group_size,
    )


def layer_quantizer(options: GptqOptions, family: Family | None) -> LayerQuantizer:
    """`family` (models/families.py) names the layers act_scale's AWQ scales fold into."""

    def quantize_layer(
        layer: nn.Module, inputs: LayerInputs, grids: dict[str, Grid]
    ) -> dict[str, QuantizedWeight]:
        modules = dict(layer.named_modules())
        _, xs = inputs.run(layer, capture=list(grids))
        if options.act_scale:
            scale_layer(layer, xs, grids, options, family)
        # Linear layers fed the same input (q/k/v, gate/up) share H, and GPTQ treats rows
        # independently given H: one sweep over their stacked rows quantizes them all.
        batches: dict[tuple[int, Grid], list[str]] = {}
        for name, grid in grids.items():
            batches.setdefault((id(xs[name]), grid), []).append(name)
        result = {}
        with torch.no_grad():
            for (_, grid), names in batches.items():
                stacked = torch.cat([modules[n].weight for n in names])
                q = gptq_quantize(stacked, hessian(xs[names[0]]), grid, **_sweep_options(options))
                row = 0
                for name in names:
                    rows = slice(row, row + modules[name].out_features)
                    row = rows.stop
                    part = _rows(q, rows)
                    modules[name].weight.copy_(part.dequantize())
                    result[name] = part
        return result

    return quantize_layer


def head_quantizer(options: GptqOptions, family: Family | None) -> HeadQuantizer:
    def quantize_head(lm: PreTrainedModel, x: torch.Tensor, grid: Grid) -> QuantizedWeight:
        head = lm.get_output_embeddings()
        if options.act_scale:
            x = scale_head(lm, x, grid, options, family)
        q = gptq_quantize(head.weight, hessian(x), grid, **_sweep_options(options))
        with torch.no_grad():
            head.weight.copy_(q.dequantize())
        return q

    return quantize_head

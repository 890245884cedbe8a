"""AWQ: activation-aware weight quantization (Lin et al., 2023, arXiv:2306.00978), on a CPU.

A few input channels of every Linear see much larger activations than the rest; rounding
the weights that multiply them costs the most. AWQ scales those weights up before rounding
(W·diag(s)) and divides the activations by the same s, which the op before the Linear
absorbs (a norm's weight, or the rows of the previous Linear), so the float model is
unchanged and the rounding error moves off the important channels.

For each decoder layer, with X the calibration inputs of a group of Linear layers that share
one input:

1. scale search, per group (the family's groups, models/families.py; for Llama: qkv after
   input_layernorm; o after v where the shapes match; gate/up after post_attention_layernorm;
   down after up):
       s(α) = mean|x|^α / mean|ŵ|^(1-α), normalised so that max(s)·min(s) = 1,   α ∈ {0, 1/n, ..., (n-1)/n}
   (ŵ: weights relative to their group's max; AutoAWQ's "duo scaling", which did better on
   held-out text than mean|x|^α alone; duo_scaling=False gives the paper's form)
       loss(α) = Σ_linears ‖X_s (Q(W·diag(s)) / s)ᵀ − X_s Wᵀ‖²
   on a sample X_s of the tokens; keep the best α (`search_scales`, plain data) and fold s
   into the previous op (`apply_scales`, which changes the model);
2. clip search, per Linear except q/k (their errors are amplified by the softmax): for each
   (row, group), the max|w| shrink factor c ∈ {1, 0.95, ..., 0.55} minimising the group's output
   error Δwᵀ H_g Δw, with H_g = X_gᵀ X_g the group's block of the (rescaled) input Gram matrix
   over all tokens (`search_clips`, plain data; quant/clip.py);
3. round to nearest on the clipped, scaled weights (quant/rtn.py).

The search is vectorised over rows and groups; costs are a few matrix products per α.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from olivepress.quant.clip import group_gram, search_clip
from olivepress.quant.decoder import final_norm
from olivepress.quant.grid import Grid, QuantizedWeight, fake_quantize, grouped_columns
from olivepress.quant.rtn import round_to_nearest

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from olivepress.models.families import Family
    from olivepress.quant.activations import LayerInputs
    from olivepress.quant.calibration import HeadQuantizer, LayerQuantizer
    from olivepress.quant.options import AwqOptions, ScaleSearchOptions

# Linear layers whose clipping error the softmax amplifies: no clip search for them.
_NO_CLIP = ("q_proj", "k_proj", "qkv_proj", "query", "key", "Wqkv")


@dataclass
class ScaleGroup:
    """Linear layers that share one input, and the op before them that can absorb a scale
    (names within one decoder layer). `norm_offset`: the op is a norm computing
    norm(x) * (norm_offset + weight), as Gemma's do."""

    prev: str
    linears: list[str]
    norm_offset: float = 0.0


@dataclass
class GroupScale:
    """The result of a scale search: the per-input-channel scale of one group."""

    group: ScaleGroup
    scale: torch.Tensor


# --- which layers share a scale -------------------------------------------------------------


def scale_groups(layer: nn.Module, family: Family) -> list[ScaleGroup]:
    """AWQ's groups for one decoder layer of a `family` (models/families.py, which the pass
    finds from the model's config): each group it lists whose source can absorb a scale here."""
    m = dict(layer.named_modules())
    groups = []
    for spec in family.scale_groups:
        present = spec.source in m and all(n in m for n in spec.linears)
        if present and can_absorb(m[spec.source], m[spec.linears[0]].in_features, spec.source_parts):
            offset = 0.0 if isinstance(m[spec.source], nn.Linear) else family.norm_offset
            groups.append(ScaleGroup(spec.source, list(spec.linears), offset))
    return groups


def can_absorb(prev: nn.Module, channels: int, fused_parts: int = 1) -> bool:
    """Whether `prev` can divide its `channels` outputs by a scale."""
    if isinstance(prev, nn.Linear):
        # Its last `channels` output rows must be exactly the group's input: v_proj with
        # grouped-query attention has fewer rows than o_proj has inputs, so no fold there.
        return prev.out_features == channels * fused_parts
    weight = getattr(prev, "weight", None)  # a norm; OLMo's LayerNorm has none to fold into
    return weight is not None and weight.shape == (channels,)


# --- step 1: search scales (data), apply them (model) --------------------------------------


def search_scale(
    weights: list[torch.Tensor], grids: list[Grid], x: torch.Tensor, options: ScaleSearchOptions
) -> torch.Tensor:
    """The per-input-channel scale s = mean|x|^α with the lowest output error of Q(W·s)/s.

    The loss is measured on `search_tokens` sampled tokens and, per Linear, `search_rows`
    sampled output rows: s is shared by all rows, and every α is scored on the same sample,
    so the comparison between α's stays sharp while the search costs a fraction of a full one.
    """
    generator = torch.Generator().manual_seed(options.seed)
    x_mean = x.abs().mean(dim=0)
    sample = x[torch.randperm(x.shape[0], generator=generator)[: options.search_tokens]]
    weights = [w[torch.randperm(w.shape[0], generator=generator)[: options.search_rows]] for w in weights]
    reference = [sample @ w.T for w in weights]
    w_mean = _relative_weight_mean(weights, grids) if options.duo_scaling else None
    best_loss, best_scale = float("inf"), torch.ones_like(x_mean)
    for i in range(options.n_grid):
        alpha = i / options.n_grid
        s = x_mean.pow(alpha) if w_mean is None else x_mean.pow(alpha) / (w_mean.pow(1 - alpha) + 1e-4)
        s = s.clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        scaled_sample = sample / s  # X·diag(1/s) · Q(W·diag(s))ᵀ == X · (Q(W·s)/s)ᵀ
        loss = 0.0
        for w, grid, y in zip(weights, grids, reference, strict=True):
            loss += (scaled_sample @ fake_quantize(w * s, grid).T - y).pow_(2).sum().item()
        if loss < best_loss:
            best_loss, best_scale = loss, s
    return best_scale


def _relative_weight_mean(weights: list[torch.Tensor], grids: list[Grid]) -> torch.Tensor:
    """Per input channel, the mean over rows of |w| / max|w| of its group."""
    relative = []
    for w, grid in zip(weights, grids, strict=True):
        groups = grouped_columns(w, grid).abs()
        groups = groups / (groups.amax(dim=-1, keepdim=True) + 1e-6)
        relative.append(groups.reshape(w.shape[0], -1)[:, : w.shape[1]])
    return torch.cat(relative).mean(dim=0)


def search_scales(
    layer: nn.Module,
    xs: dict[str, torch.Tensor],
    grids: dict[str, Grid],
    options: ScaleSearchOptions,
    family: Family,
) -> list[GroupScale]:
    """Every group's scale for one decoder layer, searched on its float weights; the model is
    not changed. `xs` holds the captured inputs [tokens, in] by Linear name, at least one per
    group that has a Linear in `grids`."""
    modules = dict(layer.named_modules())
    scales = []
    for group in scale_groups(layer, family):
        quantized = [n for n in group.linears if n in grids]
        if not quantized:
            continue
        captured = next(n for n in group.linears if n in xs)
        weights = [modules[n].weight.detach().float() for n in quantized]
        scale = search_scale(weights, [grids[n] for n in quantized], xs[captured], options)
        scales.append(GroupScale(group, scale))
    return scales


def apply_scales(
    modules: dict[str, nn.Module], scales: list[GroupScale], xs: dict[str, torch.Tensor]
) -> None:
    """Fold each scale into its group (prev(x) / s feeds W · diag(s): the float function is
    unchanged) and divide the group's captured inputs by it: every entry of a group in `xs`
    is replaced by one scaled tensor."""
    for found in scales:
        group, s = found.group, found.scale
        with torch.no_grad():
            prev = modules[group.prev]
            if isinstance(prev, nn.Linear):
                prev.weight[-s.numel() :].div_(s[:, None])
                if prev.bias is not None:
                    prev.bias[-s.numel() :].div_(s)
            else:
                # norm(x) * (offset + w) / s == norm(x) * (offset + w'), w' = (offset + w) / s - offset
                prev.weight.add_(group.norm_offset).div_(s).sub_(group.norm_offset)
                if getattr(prev, "bias", None) is not None:
                    prev.bias.div_(s)
            for name in group.linears:
                modules[name].weight.mul_(s)
        captured = next((n for n in group.linears if n in xs), None)
        if captured is not None:
            scaled = xs[captured] / s
            xs.update({n: scaled for n in group.linears if n in xs})


def scale_layer(
    layer: nn.Module,
    xs: dict[str, torch.Tensor],
    grids: dict[str, Grid],
    options: ScaleSearchOptions,
    family: Family,
) -> None:
    """Step 1 on one decoder layer: search every group's scale, then apply them all."""
    apply_scales(dict(layer.named_modules()), search_scales(layer, xs, grids, options, family), xs)


def scale_head(
    lm: PreTrainedModel, x: torch.Tensor, grid: Grid, options: ScaleSearchOptions, family: Family
) -> torch.Tensor:
    """Step 1 for lm_head: fold its scale into the final norm where it can; lm_head's scaled inputs."""
    head, norm = lm.get_output_embeddings(), final_norm(lm)
    if not can_absorb(norm, head.in_features):
        return x
    s = search_scale([head.weight.detach().float()], [grid], x, options)
    group = ScaleGroup("norm", ["lm_head"], family.norm_offset)
    apply_scales({"norm": norm, "lm_head": head}, [GroupScale(group, s)], {})
    return x / s


# --- step 2: search clips (data); step 3 is quant/rtn.py --------------------------------------------


def search_clips(
    modules: dict[str, nn.Module],
    xs: dict[str, torch.Tensor],
    grids: dict[str, Grid],
    options: AwqOptions,
    input_of: dict[str, str] | None = None,
) -> dict[str, torch.Tensor]:
    """Per Linear (except q/k), the clip value of every (row, group) [out, groups]; the model
    is not changed. `input_of` names the entry of `xs` that holds each Linear's inputs."""
    if not options.clip:
        return {}
    input_of = input_of or {name: name for name in grids}
    clips: dict[str, torch.Tensor] = {}
    grams: dict[tuple[str, Grid], torch.Tensor] = {}  # one per distinct input and grid
    with torch.no_grad():
        for name, grid in grids.items():
            if any(tag in name for tag in _NO_CLIP):
                continue
            key = (input_of[name], grid)
            if key not in grams:
                grams[key] = group_gram(xs[input_of[name]], grid)
            w = modules[name].weight.detach().float()
            clips[name] = search_clip(w, grams[key], grid, options.clip_grid, options.max_shrink)
    return clips


# --- the steps for the layer walk (quant/calibration.py) -----------------------------------


def layer_quantizer(options: AwqOptions, family: Family) -> LayerQuantizer:
    def quantize_layer(
        layer: nn.Module, inputs: LayerInputs, grids: dict[str, Grid]
    ) -> dict[str, QuantizedWeight]:
        modules = dict(layer.named_modules())
        # One captured input per distinct input: the first Linear of a group stands for all.
        input_of = {name: name for name in grids}
        for group in scale_groups(layer, family):
            if any(n in grids for n in group.linears):
                input_of.update(dict.fromkeys(group.linears, group.linears[0]))
        _, xs = inputs.run(layer, capture=sorted(set(input_of.values())))
        apply_scales(modules, search_scales(layer, xs, grids, options, family), xs)
        return round_to_nearest(modules, grids, search_clips(modules, xs, grids, options, input_of))

    return quantize_layer


def head_quantizer(options: AwqOptions, family: Family) -> HeadQuantizer:
    def quantize_head(lm: PreTrainedModel, x: torch.Tensor, grid: Grid) -> QuantizedWeight:
        modules = {"lm_head": lm.get_output_embeddings()}
        x = scale_head(lm, x, grid, options, family)
        clips = search_clips(modules, {"lm_head": x}, {"lm_head": grid}, options)
        return round_to_nearest(modules, {"lm_head": grid}, clips)["lm_head"]

    return quantize_head

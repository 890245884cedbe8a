"""AWQ: activation-aware weight quantization (Lin et al., 2023, arXiv:2306.00978), on a CPU.

A few input channels of every Linear see much larger activations than the rest; rounding
the weights that multiply them costs the most. AWQ scales those weights up before rounding
(W·diag(s)) and divides the activations by the same s, which the op before the Linear
absorbs (a norm's weight, or the rows of the previous Linear), so the float model is
unchanged and the rounding error moves off the important channels.

For each decoder layer, with X the calibration inputs of a group of Linear layers that share
one input:

1. scale search, per group (qkv after input_layernorm; o after v where the shapes match;
   gate/up after post_attention_layernorm; down after up):
       s(α) = mean|x|^α / mean|ŵ|^(1-α), normalised so that max(s)·min(s) = 1,   α ∈ {0, 1/n, ..., (n-1)/n}
   (ŵ: weights relative to their group's max; AutoAWQ's "duo scaling", which did better on
   held-out text than mean|x|^α alone; duo_scaling=False gives the paper's form)
       loss(α) = Σ_linears ‖X_s (Q(W·diag(s)) / s)ᵀ − X_s Wᵀ‖²
   on a sample X_s of the tokens; keep the best α and fold s into the previous op;
2. clip search, per Linear except q/k (their errors are amplified by the softmax): for each
   (row, group), the max|w| shrink factor c ∈ {1, 0.95, ..., 0.55} minimising the group's output
   error Δwᵀ H_g Δw, with H_g = X_gᵀ X_g the group's block of the (rescaled) input Gram matrix
   over all tokens;
3. round to nearest on the clipped, scaled weights.

The search is vectorised over rows and groups; costs are a few matrix products per α.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch import nn

from olivepress.models.handles import HfModel
from olivepress.passes.base import PassContext
from olivepress.passes.torch._quant_common import (
    LayerInputs,
    QuantPassConfig,
    final_norm,
    run_calibrated,
)
from olivepress.quant.clip import CLIP_GRID, MAX_SHRINK, clip_weight, group_gram, search_clip
from olivepress.quant.grid import Grid, QuantizedWeight, fake_quantize, grouped_columns, quantize_weight

if TYPE_CHECKING:
    from transformers import PreTrainedModel

VERSION = 1
ACCEPTS = ("hf",)


class ScaleSearchConfig(QuantPassConfig):
    """The options of AWQ's scale search (step 1), which GPTQ's act_scale runs too."""

    n_grid: int = Field(20, ge=1, description="Scale exponents tried per group: α = 0, 1/n, ..., (n-1)/n.")
    search_tokens: int = Field(512, ge=16, description="Calibration tokens the scale search measures its loss on.")
    search_rows: int = Field(256, ge=16, description="Output rows per Linear the scale search measures its loss on.")
    duo_scaling: bool = Field(
        True, description="AutoAWQ's variant: s = mean|x|^α / mean|ŵ|^(1-α), ŵ the weights relative to their group's max."
    )


class Config(ScaleSearchConfig):
    """AWQ options on top of the common ones."""

    clip: bool = Field(True, description="Search a clipping range per group after scaling.")
    clip_grid: int = Field(CLIP_GRID, ge=2, description="Clip shrink steps of 1/clip_grid ...")
    max_shrink: float = Field(MAX_SHRINK, gt=0, lt=1, description="... down to max|w| * (1 - max_shrink).")


@dataclass
class ScaleGroup:
    """Linear layers that share one input, and the op before them that can absorb a scale."""

    prev: nn.Module
    linears: list[str]


_NO_CLIP = ("q_proj", "k_proj", "qkv_proj", "query", "key", "Wqkv")


def scale_groups(layer: nn.Module) -> list[ScaleGroup]:
    """AWQ's groups for Llama-style (q/k/v, gate/up) and Phi-3-style (qkv, gate_up) layers."""
    m = dict(layer.named_modules())
    groups = []

    def add(prev: str, linears: list[str], fused_parts: int = 1) -> None:
        if prev in m and all(n in m for n in linears) and _can_absorb(m[prev], m[linears[0]].in_features, fused_parts):
            groups.append(ScaleGroup(m[prev], linears))

    if "self_attn.q_proj" in m:
        add("input_layernorm", ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"])
        add("self_attn.v_proj", ["self_attn.o_proj"])
    else:
        add("input_layernorm", ["self_attn.qkv_proj"])
        add("self_attn.qkv_proj", ["self_attn.o_proj"], fused_parts=3)  # v is the last third
    if "mlp.gate_proj" in m:
        add("post_attention_layernorm", ["mlp.gate_proj", "mlp.up_proj"])
        add("mlp.up_proj", ["mlp.down_proj"])
    else:
        add("post_attention_layernorm", ["mlp.gate_up_proj"])
        add("mlp.gate_up_proj", ["mlp.down_proj"], fused_parts=2)  # up is the second half
    return groups


def _can_absorb(prev: nn.Module, channels: int, fused_parts: int = 1) -> bool:
    if isinstance(prev, nn.Linear):
        # Its last `channels` output rows must be exactly the group's input: v_proj with
        # grouped-query attention has fewer rows than o_proj has inputs, so no fold there.
        return prev.out_features == channels * fused_parts
    weight = getattr(prev, "weight", None)
    # Gemma-style norms multiply by (1 + weight): a scale cannot be folded into that weight.
    return weight is not None and weight.shape == (channels,) and "gemma" not in type(prev).__name__.lower()


def fold_scale(group: ScaleGroup, scale: torch.Tensor, modules: dict[str, nn.Module]) -> None:
    """prev(x) / s feeds W · diag(s): the float function is unchanged."""
    with torch.no_grad():
        prev = group.prev
        if isinstance(prev, nn.Linear):
            prev.weight[-scale.numel() :].div_(scale[:, None])
            if prev.bias is not None:
                prev.bias[-scale.numel() :].div_(scale)
        else:
            prev.weight.div_(scale)
            if getattr(prev, "bias", None) is not None:
                prev.bias.div_(scale)
        for name in group.linears:
            modules[name].weight.mul_(scale)


def search_scale(
    weights: list[torch.Tensor], grids: list[Grid], x: torch.Tensor, config: ScaleSearchConfig
) -> torch.Tensor:
    """The per-input-channel scale s = mean|x|^α with the lowest output error of Q(W·s)/s.

    The loss is measured on `search_tokens` sampled tokens and, per Linear, `search_rows`
    sampled output rows: s is shared by all rows, and every α is scored on the same sample,
    so the comparison between α's stays sharp while the search costs a fraction of a full one.
    """
    generator = torch.Generator().manual_seed(config.seed)
    x_mean = x.abs().mean(dim=0)
    sample = x[torch.randperm(x.shape[0], generator=generator)[: config.search_tokens]]
    weights = [w[torch.randperm(w.shape[0], generator=generator)[: config.search_rows]] for w in weights]
    reference = [sample @ w.T for w in weights]
    w_mean = _relative_weight_mean(weights, grids) if config.duo_scaling else None
    best_loss, best_scale = float("inf"), torch.ones_like(x_mean)
    for i in range(config.n_grid):
        alpha = i / config.n_grid
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


def scale_layer(layer: nn.Module, xs: dict[str, torch.Tensor], grids: dict[str, Grid], config: ScaleSearchConfig) -> None:
    """Step 1 on one decoder layer: search every group's scale on the float weights, then fold
    each into the op before its group and divide the group's captured inputs by it.

    `xs` holds the captured inputs [tokens, in] by Linear name, at least one per group that has
    a Linear in `grids`; every entry of a group is replaced by one scaled tensor."""
    modules = dict(layer.named_modules())
    scales = []
    for group in scale_groups(layer):
        quantized = [n for n in group.linears if n in grids]
        if not quantized:
            continue
        captured = next(n for n in group.linears if n in xs)
        weights = [modules[n].weight.detach().float() for n in quantized]
        scales.append((group, captured, search_scale(weights, [grids[n] for n in quantized], xs[captured], config)))
    for group, captured, s in scales:
        fold_scale(group, s, modules)
        scaled = xs[captured] / s
        xs.update({n: scaled for n in group.linears if n in xs})


def scale_head(lm: PreTrainedModel, x: torch.Tensor, grid: Grid, config: ScaleSearchConfig) -> torch.Tensor:
    """Step 1 for lm_head: fold its scale into the final norm where it can; lm_head's scaled inputs."""
    head, norm = lm.get_output_embeddings(), final_norm(lm)
    if not _can_absorb(norm, head.in_features):
        return x
    s = search_scale([head.weight.detach().float()], [grid], x, config)
    fold_scale(ScaleGroup(norm, ["lm_head"]), s, {"lm_head": head})
    return x / s


def make_layer_quantizer(config: Config):
    def quantize_layer(layer: nn.Module, inputs: LayerInputs, grids: dict[str, Grid]) -> dict[str, QuantizedWeight]:
        modules = dict(layer.named_modules())
        # One captured input per distinct input: the first Linear of a group stands for all.
        input_of = {name: name for name in grids}
        for group in scale_groups(layer):
            if any(n in grids for n in group.linears):
                input_of.update(dict.fromkeys(group.linears, group.linears[0]))
        _, xs = inputs.run(layer, capture=sorted(set(input_of.values())))
        scale_layer(layer, xs, grids, config)

        result = {}
        grams: dict[tuple[str, Grid], torch.Tensor] = {}
        with torch.no_grad():
            for name, grid in grids.items():
                weight = modules[name].weight
                w = weight.detach().float()
                if config.clip and not any(tag in name for tag in _NO_CLIP):
                    key = (input_of[name], grid)
                    if key not in grams:
                        grams[key] = group_gram(xs[input_of[name]], grid)
                    w = clip_weight(w, search_clip(w, grams[key], grid, config.clip_grid, config.max_shrink), grid)
                q = quantize_weight(w, grid)
                weight.copy_(q.dequantize())
                result[name] = q
        return result

    return quantize_layer


def make_head_quantizer(config: Config):
    def quantize_head(lm, x: torch.Tensor, grid: Grid) -> QuantizedWeight:
        head = lm.get_output_embeddings()
        x = scale_head(lm, x, grid, config)
        with torch.no_grad():
            w = head.weight.detach().float()
            if config.clip:
                w = clip_weight(w, search_clip(w, group_gram(x, grid), grid, config.clip_grid, config.max_shrink), grid)
            q = quantize_weight(w, grid)
            head.weight.copy_(q.dequantize())
        return q

    return quantize_head


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    return run_calibrated(
        model, config, out_dir, ctx, algorithm="AWQ", layouts=("awq", "gptq"),
        quantize_layer=make_layer_quantizer(config), quantize_head=make_head_quantizer(config),
        meta={"n_grid": config.n_grid, "clip": config.clip},
    )

"""SelectiveMixedPrecision: choose the Linear layers a later quantizer keeps at `high_bits`.

The pass quantizes nothing. It writes the input model's folder again (files hard-linked, not
copied) with `mixed_precision.json` (passes/torch/mixed_precision.py), which GPTQ, AWQ and RTN
read, as Olive's quantizers read the `mixed_precision_info` this pass writes in Olive.

Algorithms (Olive's names and rules):

- k_quant_last: lm_head only. k_quant_down: lm_head, and down_proj in the first and last
  eighth of the layers and every third layer between. k_quant_mixed: the same layers' q/k/v too.
- snr, snr_relative, iqe, iqe_relative: score each weight by its quantization error at `bits`
  (relative: against its error at `high_bits`), from the weights alone.
- kld_gradient: the KL divergence between the float model's next-token distributions and those
  of a copy whose Linear weights are rounded to `bits`, on calibration text; a module's score
  is its gradient times the step from the low grid to the high one, summed over the weights
  (how much raising it to `high_bits` is expected to lower the KL divergence), per million
  weights.

Score-based algorithms promote the most sensitive units until `1 - ratio` of the scored weights
are high precision. q/k/v of a layer are one unit (the ORT GenAI builder fuses them into one
MatMul, which takes one precision). Where the model ties lm_head to the embeddings, the
embeddings get lm_head's setting.

Calibration: like the quantizers', the shipped calibration text unless `data_config` names other
data (Olive's pass reads the hub's wikitext; a config naming wikitext gets the shipped text).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from olivepress.data.config import DataConfig
from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel
from olivepress.passes.base import PassConfig, PassContext
from olivepress.passes.torch.mixed_precision import FLOAT_BITS, MIXED_PRECISION_FILE, write_mixed_precision

if TYPE_CHECKING:
    import torch
    from torch import nn

VERSION = 1
ACCEPTS = ("hf",)

Algorithm = Literal[
    "k_quant_last",
    "k_quant_down",
    "k_quant_mixed",
    "snr",
    "snr_relative",
    "iqe",
    "iqe_relative",
    "kld_gradient",
]
ATTENTION_INPUTS = ("q_proj", "k_proj", "v_proj", "qkv_proj", "query_key_value", "c_attn")
MLP_OUTPUTS = ("down_proj", "fc2", "dense_4h_to_h", "c_proj")
_EPS = 1e-12


class Config(PassConfig):
    algorithm: Algorithm = Field(..., description="How to choose the high-precision layers (Olive's names).")
    bits: Literal[2, 4, 8] = Field(4, description="Precision of the other layers.")
    group_size: int = Field(128, description="Group size of the other layers (-1: one per row).")
    sym: bool = Field(False, description="Symmetric grid for the other layers.")
    high_bits: Literal[4, 8, 16] = Field(
        8, description="Precision of the chosen layers (16: leave them float)."
    )
    high_group_size: int | None = Field(
        None, description="Group size of the chosen layers (default: group_size)."
    )
    high_sym: bool | None = Field(None, description="Symmetric grid for the chosen layers (default: sym).")
    ratio: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Score-based algorithms: the share of the scored weights left at `bits`.",
    )
    kld_memory_mode: Literal["auto", "full", "multi_gpu", "low_memory", "offload"] = Field(
        "auto",
        description="Olive's memory mode for kld_gradient; olivepress always streams (one scalar per layer).",
    )
    num_calib_samples: int = Field(8, gt=0, description="kld_gradient: calibration samples (token windows).")
    calib_seq_len: int = Field(256, gt=0, description="kld_gradient: tokens per calibration sample.")
    data_config: str | DataConfig | None = Field(
        None, description="kld_gradient: calibration data (default: shipped text)."
    )
    seed: int = 0
    num_threads: int | None = Field(
        None, gt=0, description="CPU threads; default: the cores other work leaves free."
    )

    @model_validator(mode="after")
    def _ratio_for_scores(self) -> Config:
        if not self.algorithm.startswith("k_quant") and self.ratio is None:
            raise ValueError(f"algorithm {self.algorithm} needs ratio (the share left at `bits`, e.g. 0.8)")
        return self


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    import torch

    from olivepress.cpu import torch_threads
    from olivepress.passes.torch._quantizer import load_float_model

    start = time.perf_counter()
    lm, tokenizer = load_float_model(model, "SelectiveMixedPrecision")
    high = {"bits": config.high_bits}
    if config.algorithm.startswith("k_quant"):
        default = {"bits": config.bits}
        overrides = {name: dict(high) for name in k_quant_modules(lm, config.algorithm)}
    else:
        high |= {
            "group_size": config.high_group_size or config.group_size,
            "symmetric": config.sym if config.high_sym is None else config.high_sym,
        }
        default = {"bits": config.bits, "group_size": config.group_size, "symmetric": config.sym}
        with torch.enable_grad(), torch_threads(config.num_threads):
            scores, numels = unit_scores(lm, tokenizer, config, ctx)
        overrides = promote(scores, numels, config.ratio, high)
    if getattr(lm.config, "tie_word_embeddings", False) and "lm_head" in overrides:
        embeddings = next(n for n, m in lm.named_modules() if m is lm.get_input_embeddings())
        overrides[embeddings] = dict(overrides["lm_head"])
    link_folder(model.folder, out_dir)
    write_mixed_precision(out_dir, default, overrides)
    ctx.log.info(
        "SelectiveMixedPrecision (%s): %d modules at %s bits, the rest at %d bits (%.1f s)",
        config.algorithm,
        len(overrides),
        "float" if config.high_bits == FLOAT_BITS else config.high_bits,
        config.bits,
        time.perf_counter() - start,
    )
    return model.model_copy(update={"path": str(out_dir)})


def link_folder(source: Path, out_dir: Path) -> None:
    """out_dir holding source's files: hard links where the file system allows, copies otherwise."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.name == MIXED_PRECISION_FILE:
            continue
        target = out_dir / path.name
        if path.is_dir():
            shutil.copytree(path, target)
            continue
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


# --- k_quant ----------------------------------------------------------------------------


def _layers(lm: nn.Module) -> tuple[list[nn.Module], str]:
    from olivepress.quant.decoder import decoder_layers

    layers, prefix = decoder_layers(lm)
    return list(layers), prefix


def k_quant_modules(lm: nn.Module, algorithm: str) -> list[str]:
    """Olive's k_quant rule: lm_head, plus down_proj (and q/k/v for k_quant_mixed) of the first and
    last eighth of the layers and of every third layer between."""
    from torch import nn

    names = ["lm_head"]
    if algorithm == "k_quant_last":
        return names
    layers, prefix = _layers(lm)
    n = len(layers)
    for i, layer in enumerate(layers):
        if not (i < n / 8 or i >= 7 * n / 8 or (i - n // 8) % 3 == 2):
            continue
        for sub, module in layer.named_modules():
            leaf = sub.rsplit(".", 1)[-1]
            if not isinstance(module, nn.Linear):
                continue
            if (
                leaf in MLP_OUTPUTS
                and "mlp" in sub
                or (algorithm == "k_quant_mixed" and leaf in ATTENTION_INPUTS)
            ):
                names.append(f"{prefix}.{i}.{sub}")
    return names


# --- scores -----------------------------------------------------------------------------


def _units(lm: nn.Module) -> list[tuple[str, ...]]:
    """Selection units: q/k/v of each layer together, every other Linear alone."""
    from torch import nn

    _, prefix = _layers(lm)
    grouped: dict[str, list[str]] = {}
    units: list[tuple[str, ...]] = []
    for name, module in lm.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        parent, _, leaf = name.rpartition(".")
        if name.startswith(prefix + ".") and leaf in ("q_proj", "k_proj", "v_proj"):
            grouped.setdefault(parent, []).append(name)
        else:
            units.append((name,))
    return units + [tuple(names) for names in grouped.values()]


def _fake_quantize(weight: torch.Tensor, bits: int, group_size: int, sym: bool) -> torch.Tensor:
    from olivepress.quant.grid import Grid, quantize_weight

    if bits >= FLOAT_BITS:
        return weight.detach().float()
    return quantize_weight(
        weight.detach().float(), Grid(bits=bits, group_size=group_size, sym=sym)
    ).dequantize()


def unit_scores(lm: nn.Module, tokenizer, config: Config, ctx: PassContext) -> tuple[dict, dict]:
    """(unit -> score, lower = more sensitive; unit -> weights in it)."""
    modules = dict(lm.named_modules())
    units = _units(lm)
    low = (config.bits, config.group_size, config.sym)
    high = (
        config.high_bits,
        config.high_group_size or config.group_size,
        config.sym if config.high_sym is None else config.high_sym,
    )
    if config.algorithm == "kld_gradient":
        stats = kld_alignment(lm, tokenizer, config, ctx, low, high)
    else:
        stats = {
            name: _weight_stats(modules[name].weight, config.algorithm, low, high)
            for unit in units
            for name in unit
        }
    numels = {unit: sum(modules[n].weight.numel() for n in unit) for unit in units}
    scores = {unit: _score(config.algorithm, [stats[n] for n in unit], numels[unit]) for unit in units}
    return scores, numels


def _weight_stats(weight: torch.Tensor, algorithm: str, low: tuple, high: tuple) -> dict[str, float]:
    w = weight.detach().float()
    q = _fake_quantize(w, *low)
    stats = {
        "signal": float((w * w).sum()),
        "noise": float(((w - q) ** 2).sum()),
        "iqe": float(((w - q) ** 2).mean(-1).max()),
    }
    if algorithm.endswith("_relative"):
        qh = _fake_quantize(w, *high)
        stats |= {
            "high_noise": float(((w - qh) ** 2).sum()),
            "high_iqe": float(((w - qh) ** 2).mean(-1).max()),
        }
    return stats


def _snr_db(signal: float, noise: float) -> float:
    import math

    return 10 * math.log10(max(signal, _EPS * _EPS) / max(noise, _EPS * _EPS))


def _score(algorithm: str, parts: list[dict[str, float]], numel: int) -> float:
    """One unit's score from its members' stats (sums of squares add over stacked rows; the
    worst row's error is the max over members; gradient alignments add)."""
    total = {key: sum(p[key] for p in parts) for key in parts[0]}
    worst = {key: max(p[key] for p in parts) for key in parts[0]}
    if algorithm == "snr":
        return _snr_db(total["signal"], total["noise"])
    if algorithm == "snr_relative":
        return _snr_db(total["signal"], total["noise"]) - _snr_db(total["signal"], total["high_noise"])
    if algorithm == "iqe":
        return 1.0 / (worst["iqe"] + _EPS)
    if algorithm == "iqe_relative":
        return (worst["high_iqe"] + _EPS) / (worst["iqe"] + _EPS)
    return -total["alignment"] / (max(numel, 1) / 1e6)  # kld_gradient


def promote(scores: dict, numels: dict, ratio: float, high: dict) -> dict[str, dict]:
    """Raise the most sensitive units until `1 - ratio` of the weights are high precision."""
    threshold = sum(numels.values()) * (1 - ratio)
    overrides: dict[str, dict] = {}
    promoted = 0
    for unit in sorted(scores, key=scores.get):
        promoted += numels[unit]
        for name in unit:
            overrides[name] = dict(high)
        if promoted >= threshold:
            break
    return overrides


def kld_alignment(
    lm: nn.Module, tokenizer, config: Config, ctx: PassContext, low: tuple, high: tuple
) -> dict:
    """Per Linear: sum over calibration batches of grad(KL) · (W_low - W_high), the gradient taken
    at the model whose Linear weights are all on the low grid."""
    import copy

    import torch
    import torch.nn.functional as F
    from torch import nn

    from olivepress.data.calibration import calibration_samples

    if config.kld_memory_mode not in ("auto", "low_memory"):
        ctx.log.info(
            "SelectiveMixedPrecision: kld_memory_mode %s has no effect; olivepress streams the sums",
            config.kld_memory_mode,
        )
    data = ctx.data_config(config.data_config) if config.data_config is not None else None
    tokens = calibration_samples(
        tokenizer, data, num_samples=config.num_calib_samples, seq_len=config.calib_seq_len, seed=config.seed
    )
    student = copy.deepcopy(lm)
    if getattr(student.config, "tie_word_embeddings", False):
        # lm_head is scored on its own grid, so it cannot share the embeddings' tensor here
        head = student.get_output_embeddings()
        head.weight = nn.Parameter(head.weight.detach().clone())
    for parameter in student.parameters():
        parameter.requires_grad_(False)
    linears = {name: m for name, m in student.named_modules() if isinstance(m, nn.Linear)}
    steps = {}
    with torch.no_grad():
        for name, module in linears.items():
            w_low = _fake_quantize(module.weight, *low)
            steps[name] = w_low - _fake_quantize(module.weight, *high)
            module.weight.copy_(w_low)
            module.weight.requires_grad_(True)
    sums = dict.fromkeys(linears, 0.0)
    for batch in tokens.split(1):
        with torch.no_grad():
            teacher = F.log_softmax(lm(input_ids=batch, use_cache=False).logits.float(), dim=-1)
        student_logp = F.log_softmax(student(input_ids=batch, use_cache=False).logits.float(), dim=-1)
        loss = F.kl_div(student_logp, teacher, log_target=True, reduction="none").sum(-1).mean()
        loss.backward()
        with torch.no_grad():
            for name, module in linears.items():
                sums[name] += float((module.weight.grad * steps[name]).sum())
                module.weight.grad = None
    if not all(map(lambda v: v == v, sums.values())):  # NaN from a degenerate model
        raise OlivepressError(
            "kld_gradient gave NaN scores; check the model in float32, or use snr / k_quant_mixed"
        )
    return {name: {"alignment": value} for name, value in sums.items()}

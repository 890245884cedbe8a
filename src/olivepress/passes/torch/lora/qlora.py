"""QLoRA: LoRA on a base whose Linear layers are held in 4 bits (Dettmers et al., 2023).

The base's Linear layers (all but the output head) become bitsandbytes `Linear4bit` with the
NF4 (or FP4) data type; `double_quant` also quantizes the per-block scales. bitsandbytes
0.50+ runs these on a CPU. The adapter trains in `compute_dtype` against the 4-bit weights;
the pass's output model is the input model itself (float, or an AWQ/GPTQ checkpoint), as
in Olive: the 4-bit NF4 copy lives only in memory during training.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel
from olivepress.models.loading import load_causal_lm
from olivepress.passes.base import PassContext
from olivepress.passes.torch.lora import lora
from olivepress.passes.torch.lora.train_adapter import Method, train_adapter

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

VERSION = 1
ACCEPTS = ("hf",)


class Config(lora.Config):
    """QLoRA options: LoRA's, plus how the base is held in 4 bits."""

    double_quant: bool = Field(
        True, description="Quantize the 4-bit blocks' scales too (saves ~0.4 bit per weight)."
    )
    quant_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="4-bit data type: nf4 (NormalFloat, for normal weights) or fp4."
    )
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description=(
            "Dtype the 4-bit weights are dequantised to for each product; auto: bf16 where the CPU has it, "
            "else fp32."
        ),
    )


def peft_config(config: Config, targets: list[str]):
    return lora.peft_config(config, targets)


def load_4bit_base(model: HfModel, config: Config, ctx: PassContext) -> PreTrainedModel:
    base = load_causal_lm(model)
    compute = _compute_dtype(config)
    count = quantize_to_4bit(
        base, quant_type=config.quant_type, double_quant=config.double_quant, compute_dtype=compute
    )
    ctx.log.info(
        "Base held in 4 bits: %d Linear layers as %s%s, compute in %s",
        count,
        config.quant_type,
        " with double quantization" if config.double_quant else "",
        str(compute).removeprefix("torch."),
    )
    return base


def quantize_to_4bit(
    model: PreTrainedModel, *, quant_type: str, double_quant: bool, compute_dtype: torch.dtype
) -> int:
    """Replace every Linear but the output head with a bitsandbytes Linear4bit; returns how many."""
    from torch import nn

    bnb = _bitsandbytes()
    head = model.get_output_embeddings()
    device = next(model.parameters()).device
    replaced = 0
    for name, module in list(model.named_modules()):
        if type(module) is not nn.Linear or module is head:
            continue
        layer = bnb.nn.Linear4bit(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            compute_dtype=compute_dtype,
            compress_statistics=double_quant,
            quant_type=quant_type,
            device="meta",
        )
        layer.weight = bnb.nn.Params4bit(
            module.weight.data.to("cpu"),
            requires_grad=False,
            compress_statistics=double_quant,
            quant_type=quant_type,
        )
        if module.bias is not None:
            layer.bias = nn.Parameter(module.bias.data, requires_grad=False)
        layer = layer.to(device)  # quantizes the weight
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
        replaced += 1
    # PEFT looks for this flag to wrap Linear4bit layers with its 4-bit LoRA layers.
    model.is_loaded_in_4bit = True
    return replaced


def _compute_dtype(config: Config) -> torch.dtype:
    import torch

    from olivepress.train.device import cpu_has_native_bf16, training_device

    if config.compute_dtype == "auto":
        device = training_device()
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
        return torch.bfloat16 if native else torch.float32
    return getattr(torch, config.compute_dtype)


def _bitsandbytes():
    try:
        import bitsandbytes
    except ImportError as exc:
        raise OlivepressError(
            f"QLoRA needs bitsandbytes (0.50 or later runs on a CPU), which cannot be imported ({exc}); "
            "install it with 'pip install \"bitsandbytes>=0.50\"', or use type LoRA"
        ) from exc
    return bitsandbytes


METHOD = Method("QLoRA", peft_config, load_4bit_base)


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    return train_adapter(model, config, out_dir, ctx, METHOD)

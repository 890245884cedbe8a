"""LoRA: a trainable low-rank update B·A beside each target Linear (Hu et al., 2021).

On an AWQ / GPTQ checkpoint the base loads as float weights exactly on its quantized grid,
so the adapter learns to correct that grid, and the pass's output model is that checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from olivepress.models.handles import HfModel
from olivepress.passes.base import PassContext
from olivepress.passes.torch.lora.config import LowRankConfig
from olivepress.passes.torch.lora.train_adapter import Method, train_adapter

VERSION = 1
ACCEPTS = ("hf",)


class Config(LowRankConfig):
    """LoRA options (seed 001's names); training data and arguments as in AdapterPassConfig."""

    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    double_quant: bool | None = Field(
        None,
        description="QLoRA's option (seed 001 sets it on a LoRA pass): no "
        "effect on LoRA, whose base stays float "
        "or "
        "on its AWQ/GPTQ grid; a warning says so. Use type QLoRA for a 4-bit NF4 base.",
    )


def peft_config(config: Config, targets: list[str], *, use_dora: bool = False):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        modules_to_save=config.modules_to_save,
        use_dora=use_dora,
        task_type="CAUSAL_LM",
        bias="none",
    )


METHOD = Method("LoRA", peft_config)


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    if config.double_quant:
        ctx.log.warning(
            "double_quant has no effect on a LoRA pass (the base is not quantized to 4 bits); use type "
            "QLoRA for that"
        )
    return train_adapter(model, config, out_dir, ctx, METHOD)

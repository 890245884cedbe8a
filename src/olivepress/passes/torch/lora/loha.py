"""LoHa: the update is the Hadamard product of two low-rank products (Hyeon-Woo et al., 2022),
which reaches a higher effective rank for the same parameters as LoRA."""

from __future__ import annotations

from pathlib import Path

from olivepress.models.handles import HfModel
from olivepress.passes.base import PassContext
from olivepress.passes.torch.lora.config import LycorisConfig
from olivepress.passes.torch.lora.train_adapter import Method, train_adapter

VERSION = 1
ACCEPTS = ("hf",)


class Config(LycorisConfig):
    """LoHa options: rank and alpha (as LoRA's) and two kinds of dropout."""


def peft_config(config: Config, targets: list[str]):
    from peft import LoHaConfig

    return LoHaConfig(
        r=config.lora_r,
        alpha=config.lora_alpha,
        rank_dropout=config.rank_dropout,
        module_dropout=config.module_dropout,
        target_modules=targets,
        modules_to_save=config.modules_to_save,
        task_type="CAUSAL_LM",
    )


METHOD = Method("LoHa", peft_config)


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    return train_adapter(model, config, out_dir, ctx, METHOD)

"""LoHa: the update is the Hadamard product of two low-rank products (Hyeon-Woo et al., 2022),
which reaches a higher effective rank for the same parameters as LoRA."""

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
    """LoHa options: rank and alpha (as LoRA's) and two kinds of dropout."""

    lora_r: int = Field(8, ge=1, description="Rank of each of the two factors (also 'r').")
    lora_alpha: float = Field(16, gt=0, description="Scale: the update is multiplied by lora_alpha / lora_r (also 'alpha').")
    rank_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on each rank of the update, in training.")
    module_dropout: float = Field(0.0, ge=0, lt=1, description="Probability of switching a whole adapted layer off in a step.")


def peft_config(config: Config, targets: list[str]):
    from peft import LoHaConfig

    return LoHaConfig(
        r=config.lora_r, alpha=config.lora_alpha, rank_dropout=config.rank_dropout, module_dropout=config.module_dropout,
        target_modules=targets, modules_to_save=config.modules_to_save, task_type="CAUSAL_LM",
    )


METHOD = Method("LoHa", peft_config)


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    return train_adapter(model, config, out_dir, ctx, METHOD)

"""LoKr: the update is a Kronecker product of a small matrix and a low-rank one (Yeh et al., 2023):
few parameters for a full-rank-capable update."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from olivepress.models.handles import HfModel
from olivepress.passes.base import PassContext
from olivepress.passes.torch.lora.config import LycorisConfig
from olivepress.passes.torch.lora.train_adapter import Method, train_adapter

VERSION = 1
ACCEPTS = ("hf",)


class Config(LycorisConfig):
    """LoKr options: rank and alpha (as LoRA's), dropouts, and how the weight is factored."""

    decompose_factor: int = Field(
        -1, description="Size of the small Kronecker factor; -1: as square as the shape allows."
    )


def peft_config(config: Config, targets: list[str]):
    from peft import LoKrConfig

    return LoKrConfig(
        r=config.lora_r,
        alpha=config.lora_alpha,
        rank_dropout=config.rank_dropout,
        module_dropout=config.module_dropout,
        decompose_factor=config.decompose_factor,
        target_modules=targets,
        modules_to_save=config.modules_to_save,
        task_type="CAUSAL_LM",
    )


METHOD = Method("LoKr", peft_config)


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    return train_adapter(model, config, out_dir, ctx, METHOD)

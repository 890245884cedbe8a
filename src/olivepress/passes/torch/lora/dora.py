"""DoRA: LoRA on the direction of each weight plus a trainable magnitude (Liu et al., 2024).

Closer to full fine-tuning than LoRA at the same rank, at about twice LoRA's cost per step
(the weight norm is recomputed in every forward). Options as LoRA's.
"""

from __future__ import annotations

from pathlib import Path

from olivepress.models.handles import HfModel
from olivepress.passes.base import PassContext
from olivepress.passes.torch.lora import lora
from olivepress.passes.torch.lora.train_adapter import Method, train_adapter

VERSION = 1
ACCEPTS = ("hf",)


class Config(lora.Config):
    """DoRA options: the same as LoRA's."""


def peft_config(config: Config, targets: list[str]):
    return lora.peft_config(config, targets, use_dora=True)


METHOD = Method("DoRA", peft_config)


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    if config.double_quant:
        ctx.log.warning("double_quant has no effect on a DoRA pass (the base is not quantized to 4 bits)")
    return train_adapter(model, config, out_dir, ctx, METHOD)

"""AWQ: activation-aware weight quantization, on a CPU (the algorithm: quant/awq.py).

Scales the weights of the input channels with large activations up before rounding and folds
1/s into the op before them, searches a clipping range per group, then rounds to nearest.
Writes the AWQ layout when it can hold the result, the GPTQ layout otherwise.
"""

from __future__ import annotations

from pathlib import Path

from olivepress.models.families import folder_family
from olivepress.models.handles import HfModel
from olivepress.passes.base import PassConfig, PassContext
from olivepress.passes.torch._quantizer import run_calibrated
from olivepress.quant import awq
from olivepress.quant.options import AwqOptions

VERSION = 1
ACCEPTS = ("hf",)


class Config(AwqOptions, PassConfig):
    """AWQ options on top of the common ones."""


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    family = folder_family(model.folder)  # which layers share a scale, and where it folds
    return run_calibrated(
        model,
        config,
        out_dir,
        ctx,
        algorithm="AWQ",
        layouts=("awq", "gptq"),
        quantize_layer=awq.layer_quantizer(config, family),
        quantize_head=awq.head_quantizer(config, family),
        meta={"n_grid": config.n_grid, "clip": config.clip},
    )

"""GPTQ, on a CPU (the algorithm: quant/gptq.py), by default after AWQ's scale search
(`act_scale`), with diagonal damping and a clipping search for each group's range.
Always writes the GPTQ layout.
"""

from __future__ import annotations

from pathlib import Path

from olivepress.models.families import folder_family
from olivepress.models.handles import HfModel
from olivepress.passes.base import PassConfig, PassContext
from olivepress.passes.torch._quantizer import run_calibrated
from olivepress.quant import gptq
from olivepress.quant.options import GptqOptions

VERSION = 3
ACCEPTS = ("hf",)


class Config(GptqOptions, PassConfig):
    """GPTQ options on top of the common ones. GPTQ always writes the GPTQ layout.
    With act_scale, AWQ's scale search options (n_grid, search_tokens, ...) apply too."""


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    family = folder_family(model.folder) if config.act_scale else None  # where act_scale's scales fold
    if config.desc_act:
        ctx.log.warning(
            "GPTQ: desc_act writes a non-monotone g_idx; the ORT GenAI model builder passes it to "
            "MatMulNBits, whose CPU kernel does not reproduce these weights exactly (check the exported "
            "model's quality)"
        )
    return run_calibrated(
        model,
        config,
        out_dir,
        ctx,
        algorithm="GPTQ",
        layouts=("gptq",),
        quantize_layer=gptq.layer_quantizer(config, family),
        quantize_head=gptq.head_quantizer(config, family),
        meta={
            "block_size": config.block_size,
            "diag_damp": config.diag_damp,
            "clip": config.clip,
            "act_scale": config.act_scale,
        },
        desc_act=config.desc_act,
        damp_percent=config.damp_percent,
    )

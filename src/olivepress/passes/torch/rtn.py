"""RTN: round every weight to the nearest point of its group's min/max grid (quant/rtn.py).

No calibration data; the baseline AWQ and GPTQ are measured against. Writes the AWQ layout
when it can hold the result, the GPTQ layout otherwise (quant/plan.py).

Olive's options work as Olive's `rtn` pass has them: `lm_head` and `embeds` (8-bit lm_head and
embeddings, tied where the model ties them; see head_and_embeddings.py), `overrides` per module
name, and a model that GPTQ or AWQ has already quantized, of which RTN then quantizes what is
left (lm_head, embeddings).
"""

from __future__ import annotations

from pathlib import Path

from olivepress.models.handles import HfModel
from olivepress.passes.base import PassConfig, PassContext
from olivepress.passes.torch._quantizer import run_rtn
from olivepress.quant.options import QuantOptions

VERSION = 2
ACCEPTS = ("hf",)


class Config(QuantOptions, PassConfig):
    """RTN takes the common quantizer options; the calibration ones are ignored."""


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    return run_rtn(model, config, out_dir, ctx)

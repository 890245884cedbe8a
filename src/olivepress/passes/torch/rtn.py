"""RTN: round every weight to the nearest point of its group's min/max grid.

No calibration data; the baseline AWQ and GPTQ are measured against. Writes the AWQ layout
when it can hold the result, the GPTQ layout otherwise (see _quant_common.plan_quantization).
"""

from __future__ import annotations

import time
from pathlib import Path

from olivepress.models.handles import HfModel
from olivepress.passes.base import PassContext
from olivepress.passes.torch._quant_common import (
    QuantPassConfig,
    compute_threads,
    describe_plan,
    load_float_model,
    plan_quantization,
    write_checkpoint,
)

VERSION = 1
ACCEPTS = ("hf",)


class Config(QuantPassConfig):
    """RTN takes the common quantizer options; the calibration ones are ignored."""


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    import torch

    from olivepress.quant.grid import quantize_weight

    start = time.perf_counter()
    lm, _ = load_float_model(model, "RTN")
    plan = plan_quantization(lm, config, layouts=("awq", "gptq"))
    describe_plan(plan, ctx.log, "RTN")
    modules = dict(lm.named_modules())
    quantized = {}
    with torch.no_grad(), compute_threads(config.num_threads, ctx.log):
        for name, grid in plan.grids.items():
            linear = modules[name]
            q = quantize_weight(linear.weight, grid)
            linear.weight.copy_(q.dequantize())
            quantized[name] = q
    handle = write_checkpoint(lm, quantized, model, out_dir, plan, config, algorithm="rtn")
    ctx.log.info("RTN: %d Linear layers in %.1f s -> %s", len(quantized), time.perf_counter() - start, out_dir)
    return handle

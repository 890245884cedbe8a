"""RTN: round every weight to the nearest point of its group's min/max grid.

No calibration data; the baseline AWQ and GPTQ are measured against. Writes the AWQ layout
when it can hold the result, the GPTQ layout otherwise (see _quant_common.plan_quantization).

Olive's options work as Olive's `rtn` pass has them: `lm_head` and `embeds` (8-bit lm_head and
embeddings, tied where the model ties them; see head_and_embeddings.py), `overrides` per module
name, and a model that GPTQ or AWQ has already quantized, of which RTN then quantizes what is
left (lm_head, embeddings).
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
    with_mixed_precision,
    write_checkpoint,
)

VERSION = 2
ACCEPTS = ("hf",)


class Config(QuantPassConfig):
    """RTN takes the common quantizer options; the calibration ones are ignored."""


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    import torch

    from olivepress.passes.torch.head_and_embeddings import (
        embeddings_meta,
        grid_for,
        quantize_embeddings,
        quantize_remaining,
    )
    from olivepress.quant.grid import quantize_weight

    start = time.perf_counter()
    config = with_mixed_precision(config, model, ctx, "RTN")
    if model.quantization_method() is not None:
        return quantize_remaining(model, config, out_dir, ctx.log)
    lm, _ = load_float_model(model, "RTN")
    tied = bool(getattr(lm.config, "tie_word_embeddings", False))
    plan = plan_quantization(lm, config, layouts=("awq", "gptq") if not config.embeds else ("gptq",))
    describe_plan(plan, ctx.log, "RTN")
    modules = dict(lm.named_modules())
    quantized = {}
    meta = {}
    with torch.no_grad(), compute_threads(config.num_threads, ctx.log):
        for name, grid in plan.grids.items():
            linear = modules[name]
            q = quantize_weight(linear.weight, grid)
            linear.weight.copy_(q.dequantize())
            quantized[name] = q
        if config.embeds:
            embedding = lm.get_input_embeddings()
            embed_name = next(n for n, m in modules.items() if m is embedding)
            grid = grid_for(config, embed_name, embedding.weight.shape[1], set(modules))
            if grid is not None:
                values, shared = quantize_embeddings(
                    embedding.weight, grid, quantized.get("lm_head"), plan.grids.get("lm_head"), tied
                )
                embedding.weight.copy_(values)
                meta["embeds"] = embeddings_meta(grid, shared)
    handle = write_checkpoint(lm, quantized, model, out_dir, plan, config, algorithm="rtn", meta=meta)
    ctx.log.info("RTN: %d Linear layers in %.1f s -> %s", len(quantized), time.perf_counter() - start, out_dir)
    return handle

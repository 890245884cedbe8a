"""The run the quantizer passes share: load the float model, plan, (calibrate and walk the
layers,) write the checkpoint. The algorithms are in olivepress/quant/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olivepress.cpu import available_cores, torch_threads
from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel
from olivepress.passes.base import PassContext
from olivepress.quant.calibration import calibration_tokens, quantize_layer_by_layer
from olivepress.quant.options import QuantOptions
from olivepress.quant.plan import QuantPlan, describe_plan, plan_quantization

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from olivepress.quant.calibration import HeadQuantizer, LayerQuantizer
    from olivepress.quant.grid import QuantizedWeight


def load_float_model(model: HfModel, algorithm: str) -> tuple[PreTrainedModel, Any]:
    """The input as a float32 model and its tokenizer, refusing inputs a quantizer cannot take."""
    import torch

    from olivepress.models.loading import load_causal_lm, load_tokenizer

    method = model.quantization_method()
    if method is not None:
        raise OlivepressError(
            f"{model.path} is already quantized ('{method}'); {algorithm} needs the float model it was "
            "made from"
        )
    if model.adapter_path:
        raise OlivepressError(
            f"{model.path} comes with the adapter {model.adapter_path}; merge it first (MergeAdapterWeights) "
            f"so that {algorithm} quantizes the weights the model really uses"
        )
    lm = load_causal_lm(model, dtype=torch.float32)
    lm.eval()
    lm.config.use_cache = False
    return lm, load_tokenizer(model)


def write_checkpoint(
    lm: PreTrainedModel,
    quantized: dict[str, QuantizedWeight],
    source: HfModel,
    out_dir: Path,
    plan: QuantPlan,
    options: QuantOptions,
    *,
    algorithm: str,
    meta: dict[str, Any] | None = None,
    desc_act: bool = False,
    damp_percent: float = 0.0,
) -> HfModel:
    """Write the checkpoint in the plan's layout; the handle of the new model."""
    import torch

    from olivepress import __version__
    from olivepress.quant.checkpoint import save_quantized
    from olivepress.quant.qconfig import quantization_config

    meta = {"quantizer": f"olivepress {__version__}", "algorithm": algorithm, **(meta or {})}
    qconfig = quantization_config(
        plan, options, quantized, meta=meta, desc_act=desc_act, damp_percent=damp_percent
    )
    save_quantized(
        lm,
        quantized,
        source.folder,
        out_dir,
        layout=plan.layout,
        quantization_config=qconfig,
        dtype=getattr(torch, float_dtype(lm, options)),
    )
    return HfModel(
        path=str(out_dir),
        task=source.task,
        load_kwargs={k: v for k, v in source.load_kwargs.items() if k == "trust_remote_code"},
    )


def float_dtype(lm: PreTrainedModel, options: QuantOptions) -> str:
    """The dtype the checkpoint's float tensors are written in (and its config names)."""
    from olivepress.models.families import find_family

    if options.dtype != "auto":
        return options.dtype
    family = find_family(lm.config)
    # float32 rather than bfloat16: AWQ folds its scales into Gemma's norms as (1 + w) / s - 1,
    # values near -1 whose small differences bfloat16's 8 bits would lose.
    return "float32" if family is not None and not family.float16_safe else "float16"


def with_mixed_precision(
    options: QuantOptions, model: HfModel, ctx: PassContext, algorithm: str
) -> QuantOptions:
    """`options` with the model folder's mixed-precision info (SelectiveMixedPrecision) applied."""
    from olivepress.passes.torch.mixed_precision import merged_options, read_mixed_precision

    info = read_mixed_precision(model.folder)
    if info is None:
        return options
    return type(options).model_validate(merged_options(options.model_dump(), info, ctx.log, algorithm))


def run_rtn(model: HfModel, options: QuantOptions, out_dir: Path, ctx: PassContext) -> HfModel:
    """Round to nearest, no calibration; on a model GPTQ or AWQ already quantized, only what is
    left (lm_head, embeddings: Olive's rtn after gptq)."""
    import torch

    from olivepress.passes.torch.head_and_embeddings import (
        embeddings_meta,
        grid_for,
        quantize_embeddings,
        quantize_remaining,
    )
    from olivepress.quant.rtn import round_to_nearest

    start = time.perf_counter()
    options = with_mixed_precision(options, model, ctx, "RTN")
    if model.quantization_method() is not None:
        return quantize_remaining(model, options, out_dir, ctx.log)
    lm, _ = load_float_model(model, "RTN")
    tied = bool(getattr(lm.config, "tie_word_embeddings", False))
    # Quantized embeddings live in the GPTQ layout's checkpoint only.
    plan = plan_quantization(lm, options, layouts=("gptq",) if options.embeds else ("awq", "gptq"))
    describe_plan(plan, ctx.log, "RTN")
    modules = dict(lm.named_modules())
    meta = {}
    with torch.no_grad(), torch_threads(options.num_threads) as threads:
        ctx.log.info("using %d of %d CPU threads", threads.count, available_cores())
        quantized = round_to_nearest(modules, plan.grids)
        if options.embeds:
            embedding = lm.get_input_embeddings()
            embed_name = next(n for n, m in modules.items() if m is embedding)
            grid = grid_for(options, embed_name, embedding.weight.shape[1], set(modules))
            if grid is not None:
                values, shared = quantize_embeddings(
                    embedding.weight, grid, quantized.get("lm_head"), plan.grids.get("lm_head"), tied
                )
                embedding.weight.copy_(values)
                meta["embeds"] = embeddings_meta(grid, shared)
    handle = write_checkpoint(lm, quantized, model, out_dir, plan, options, algorithm="rtn", meta=meta)
    seconds = time.perf_counter() - start
    ctx.log.info("RTN: %d Linear layers in %.1f s -> %s", len(quantized), seconds, out_dir)
    return handle


def run_calibrated(
    model: HfModel,
    options: QuantOptions,
    out_dir: Path,
    ctx: PassContext,
    *,
    algorithm: str,
    layouts: tuple[str, ...],
    quantize_layer: LayerQuantizer,
    quantize_head: HeadQuantizer,
    meta: dict[str, Any],
    **checkpoint_options: Any,
) -> HfModel:
    """The run of a calibrated quantizer (AWQ, GPTQ): load, plan, calibrate, quantize layer by
    layer on the free cores, write the checkpoint. `meta` goes into quantization_config.meta,
    after the calibration settings."""
    start = time.perf_counter()
    options = with_mixed_precision(options, model, ctx, algorithm)
    lm, tokenizer = load_float_model(model, algorithm)
    plan = plan_quantization(lm, options, layouts=layouts)
    describe_plan(plan, ctx.log, algorithm)
    data_config = ctx.data_config(options.data_config) if options.data_config is not None else None
    tokens = calibration_tokens(
        tokenizer,
        data_config,
        num_samples=options.num_calib_samples,
        seq_len=options.calib_seq_len,
        seed=options.seed,
    )
    ctx.log.info("%s: %d calibration samples x %d tokens", algorithm, tokens.shape[0], tokens.shape[1])
    with torch_threads(options.num_threads) as threads:
        ctx.log.info("using %d of %d CPU threads", threads.count, available_cores())
        quantized = quantize_layer_by_layer(
            lm,
            tokens,
            plan,
            quantize_layer,
            quantize_head,
            batch_size=options.batch_size,
            log=ctx.log,
            name=algorithm,
        )
    meta = {
        "num_calib_samples": tokens.shape[0],
        "calib_seq_len": tokens.shape[1],
        "seed": options.seed,
        **meta,
    }
    handle = write_checkpoint(
        lm,
        quantized,
        model,
        out_dir,
        plan,
        options,
        algorithm=algorithm.lower(),
        meta=meta,
        **checkpoint_options,
    )
    ctx.log.info("%s: done in %.1f s -> %s", algorithm, time.perf_counter() - start, out_dir)
    return handle

"""OrtTransformersOptimization: onnxruntime's transformer fusions on an ONNX model.

`onnxruntime.transformers.optimizer.optimize_model` folds the exported subgraphs of a
transformer back into single contrib ops (Attention, EmbedLayerNormalization,
SkipLayerNormalization, BiasGelu, ...). Which fusions it tries depends on the model type; it is
read from the config.json that OnnxConversion copies beside the model, as are the number of
heads and the hidden size. The fusions that applied are logged and recorded in the model's
metadata (`olivepress.fusions`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from olivepress.errors import OlivepressError
from olivepress.models.handles import OnnxModel
from olivepress.models.onnx_session import onnx_file
from olivepress.passes.base import PassContext
from olivepress.passes.onnx.model_files import (
    OnnxOutputConfig,
    quiet_loggers,
    set_metadata,
    write_model,
)

VERSION = 1
ACCEPTS = ("onnx",)

# Hugging Face model_type -> onnxruntime optimizer model type (the fusion set that fits it).
ORT_MODEL_TYPES = {
    **dict.fromkeys(
        (
            "bert",
            "roberta",
            "xlm-roberta",
            "camembert",
            "distilbert",
            "albert",
            "electra",
            "mpnet",
            "ernie",
            "xlm",
            "flaubert",
            "layoutlm",
            "mobilebert",
            "squeezebert",
            "deberta",
            "deberta-v2",
            "nomic_bert",
        ),
        "bert",
    ),
    **dict.fromkeys(("vit", "deit", "beit", "dinov2", "yolos"), "vit"),
    "swin": "swin",
    **dict.fromkeys(
        ("gpt2", "gpt_neo", "gptj", "codegen", "llama", "mistral", "qwen2", "gemma", "granite"), "gpt2"
    ),
    "gpt_neox": "gpt_neox",
    "qwen3": "qwen3",
    "phi": "phi",
    **dict.fromkeys(("bart", "mbart", "marian", "blenderbot", "pegasus", "whisper"), "bart"),
    **dict.fromkeys(("t5", "mt5"), "t5"),
    "clip": "clip",
    "sam2": "sam2",
}
HEADS_KEYS = ("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")
HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model", "dim")


class Config(OnnxOutputConfig):
    model_type: str | None = Field(
        None,
        description=(
            "onnxruntime optimizer model type (bert, gpt2, bart, t5, vit, ...); default: from config.json."
        ),
    )
    num_heads: int = Field(
        0, ge=0, description="Attention heads; 0: from config.json, else detected from the graph."
    )
    hidden_size: int = Field(
        0, ge=0, description="Hidden size; 0: from config.json, else detected from the graph."
    )
    opt_level: Literal[0, 1, 2, 99] | None = Field(
        None,
        description=(
            "onnxruntime graph optimizations before the fusions (0 none, 1 basic, 2 extended, 99 all); "
            "default per model type."
        ),
    )
    use_gpu: bool = Field(
        False, description="Optimize for a GPU provider (GPU-only fusions, fp16-friendly graph)."
    )
    only_onnxruntime: bool = Field(
        False, description="Only onnxruntime's graph optimizations, no Python fusions."
    )
    optimization_options: dict[str, Any] = Field(
        default_factory=dict,
        description='FusionOptions attributes, e.g. {"enable_gelu": false, "enable_attention": false}.',
    )
    float16: bool = Field(False, description="Convert the fused model to float16 (for GPUs).")
    keep_io_types: bool = Field(True, description="With float16: keep float32 model inputs and outputs.")
    force_fp32_ops: list[str] | None = Field(None, description="With float16: op types to keep in float32.")


def run(model: OnnxModel, config: Config, out_dir: Path, ctx: PassContext) -> OnnxModel:
    import onnxruntime as ort
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model

    source = onnx_file(model, "OrtTransformersOptimization")
    hf_config = _hf_config(model.folder)
    model_type = config.model_type or _ort_model_type(hf_config, ctx.log)
    if model_type not in MODEL_TYPES:
        raise OlivepressError(
            f"OrtTransformersOptimization: unknown model_type '{model_type}'; use one of "
            f"{', '.join(sorted(MODEL_TYPES))}"
        )
    num_heads = config.num_heads or _first_int(hf_config, HEADS_KEYS)
    hidden_size = config.hidden_size or _first_int(hf_config, HIDDEN_KEYS)
    options = FusionOptions(model_type)
    for key, value in config.optimization_options.items():
        if not hasattr(options, key):
            known = ", ".join(
                sorted(k for k in vars(options) if k.startswith(("enable_", "use_", "disable_")))
            )
            raise OlivepressError(
                f"optimization_options: '{key}' is not a FusionOptions attribute; known: {known}"
            )
        setattr(options, key, value)

    use_gpu = config.use_gpu
    if use_gpu and not {"CUDAExecutionProvider", "MIGraphXExecutionProvider"} & set(
        ort.get_available_providers()
    ):
        # onnxruntime's GPU pre-pass needs a GPU session; the fusions themselves do not.
        ctx.log.info(
            "No GPU provider here: onnxruntime's GPU graph pre-optimization is skipped, the fusions "
            "still apply"
        )
        opt_level = MODEL_TYPES[model_type][2] if config.opt_level is None else config.opt_level
        if opt_level <= 1:
            use_gpu = False  # basic optimizations do not depend on the provider
    ctx.log.info(
        "Optimizing %s as model_type %s (heads %s, hidden %s)",
        source.name,
        model_type,
        num_heads or "auto",
        hidden_size or "auto",
    )
    with quiet_loggers("", "onnxruntime"):  # its modules log every fusion attempt, under top-level names
        optimizer = optimize_model(
            str(source),
            model_type=model_type,
            num_heads=num_heads,
            hidden_size=hidden_size,
            optimization_options=options,
            opt_level=config.opt_level,
            use_gpu=use_gpu,
            only_onnxruntime=config.only_onnxruntime,
        )
        fusions = {op: count for op, count in optimizer.get_fused_operator_statistics().items() if count}
        if config.float16:
            optimizer.convert_float_to_float16(
                keep_io_types=config.keep_io_types, op_block_list=config.force_fp32_ops
            )
    summary = ", ".join(f"{op} x{count}" for op, count in fusions.items()) or "none"
    ctx.log.info("Fusions applied: %s", summary)
    if not fusions:
        ctx.log.warning(
            "No fusion applied to %s: the graph matched none of the %s patterns", source.name, model_type
        )
    set_metadata(optimizer.model, fusions=json.dumps(fusions), ort_model_type=model_type)
    return write_model(optimizer.model, out_dir, config, source=model, file_name=source.name)


def _hf_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _ort_model_type(hf_config: dict[str, Any], log: logging.Logger) -> str:
    hf_type = hf_config.get("model_type")
    if hf_type is None:
        raise OlivepressError(
            "OrtTransformersOptimization cannot tell the model type: the folder has no config.json "
            "with model_type; "
            "set model_type (bert, gpt2, bart, t5, vit, ...)"
        )
    if hf_type in ORT_MODEL_TYPES:
        return ORT_MODEL_TYPES[hf_type]
    log.warning(
        "No known onnxruntime fusion set for model_type '%s'; trying the bert fusions (set model_type "
        "to choose)",
        hf_type,
    )
    return "bert"


def _first_int(hf_config: dict[str, Any], keys: tuple[str, ...]) -> int:
    for key in keys:
        value = hf_config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return 0

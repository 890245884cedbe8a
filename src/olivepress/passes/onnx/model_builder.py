"""ModelBuilder: an HF decoder into an ORT GenAI folder with onnxruntime_genai's model builder.

Quantized AWQ / GPTQ checkpoints are read as they are (the builder keeps their integers), and
a PEFT adapter on the input is built into the graph as a LoRA MatMul path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from olivepress.aliases import take_aliases
from olivepress.capture import output_to_file, tail
from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel, OnnxModel
from olivepress.passes.base import PassConfig, PassContext
from olivepress.targets import canonical_provider

VERSION = 1
ACCEPTS = ("hf",)

# Execution providers the builder builds for -> the builder's short names for them.
BUILDER_PROVIDERS = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "DmlExecutionProvider": "dml",
    "WebGpuExecutionProvider": "webgpu",
    "NvTensorRTRTXExecutionProvider": "NvTensorRtRtx",
}


class Config(PassConfig):
    precision: Literal["fp32", "fp16", "bf16", "int8", "int4"] = Field(
        "int4", description="Weight precision of the ONNX model."
    )
    execution_provider: str | None = Field(
        None,
        description=(
            "Provider to build for (CPUExecutionProvider, CUDAExecutionProvider, ...); default: the "
            "workflow's target."
        ),
    )
    metadata_only: bool = Field(
        False, description="Write genai_config.json and tokenizer files only (input is already ONNX-ready)."
    )
    search: dict[str, Any] | None = Field(
        None, description="Generation defaults written into genai_config.json's 'search'."
    )
    int4_block_size: Literal[16, 32, 64, 128, 256] | None = Field(
        None, description="Block size of int4/int8 weights (builder default 32)."
    )
    int4_accuracy_level: Literal[0, 1, 2, 3, 4] | None = Field(
        None,
        description=(
            "MatMulNBits compute precision: 1 fp32, 2 fp16, 3 bf16, 4 int8 (builder default 4 on CPU)."
        ),
    )
    shared_embeddings: bool | None = Field(
        None, description="Share the embedding and LM-head weights (tied models)."
    )
    quantize_embeddings: bool = Field(
        True,
        description=(
            "Let the builder quantize the token embedding and lm_head too (its default, RTN). False "
            "keeps them "
            "float: more exact (an AWQ/GPTQ checkpoint leaves them float, and this keeps its model exactly), "
            "larger and slower to decode."
        ),
    )
    extra_options: dict[str, Any] = Field(
        default_factory=dict, description="Further builder extra_options, passed as they are."
    )

    # Olive's ModelBuilder options that are the builder's extra_options under another name.
    OLIVE_ALIASES: ClassVar[dict[str, str]] = {
        "int4_is_symmetric": "is_symmetric",
        "int4_op_types_to_quantize": "op_types_to_quantize",
        "int4_nodes_to_exclude": "nodes_to_exclude",
        "int4_algo_config": "algo_config",
        "use_qdq": "use_qdq",
        "include_hidden_states": "include_hidden_states",
        "exclude_embeds": "exclude_embeds",
        "exclude_lm_head": "exclude_lm_head",
        "enable_cuda_graph": "enable_cuda_graph",
        "use_8bits_moe": "use_8bits_moe",
        "use_webgpu_fp32": "use_webgpu_fp32",
        "use_cuda_bf16": "use_cuda_bf16",
    }

    @model_validator(mode="before")
    @classmethod
    def _olive_options_to_extra_options(cls, data: Any) -> Any:
        data, found = take_aliases(data, cls.OLIVE_ALIASES)
        if not found:
            return data
        extra = dict(data.get("extra_options") or {})
        for builder_name, value in found.items():
            if isinstance(value, list):  # the builder reads lists as "/"- or ","-joined text
                value = ("/" if builder_name == "op_types_to_quantize" else ",").join(map(str, value))
            extra.setdefault(builder_name, value)
        data["extra_options"] = extra
        return data


def builder_architectures() -> set[str]:
    """Architectures the installed ORT GenAI builder converts, read from its source so the list
    follows builder upgrades (importing the builder would pull in torch)."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("onnxruntime_genai.models.builder")
    if spec is None or spec.origin is None:
        return set()
    source = Path(spec.origin).read_text()
    return set(re.findall(r'architectures\[0\] == "(\w+)"', source))


def builder_provider(name: str) -> str:
    provider = BUILDER_PROVIDERS.get(canonical_provider(name) or "")
    if provider is None:
        raise OlivepressError(
            f"the ORT GenAI model builder cannot build for '{name}'; it builds for CPU, CUDA, DML, "
            "WebGPU and "
            "NvTensorRtRtx execution providers (use the generic ONNX path for others)"
        )
    return provider


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> OnnxModel:
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    provider = builder_provider(config.execution_provider or ctx.execution_provider)
    options = _extra_options(model, config)
    # The log stays beside the model in its cache entry (not inside the model folder).
    log_file = out_dir.parent / "model_builder.log"
    ctx.log.info(
        "Building %s ONNX model for %s (full builder log: model_builder.log in the cache entry)",
        config.precision,
        provider,
    )
    cache_dir = ctx.scratch_dir / "builder-cache"
    args = (None, model.path, str(out_dir), config.precision, provider, str(cache_dir))
    try:
        with output_to_file(log_file, status=f"building the {config.precision} ONNX model"):
            extra = parse_extra_options(*args, [f"{key}={value}" for key, value in options.items()])
            _adapt_builder_config(extra, model)
            create_model(*args, **extra)
    except Exception as exc:
        raise OlivepressError(
            f"the ORT GenAI model builder failed on {model.path}: {exc} (last log lines: {tail(log_file)})"
        ) from exc
    genai_config = out_dir / "genai_config.json"
    if not genai_config.is_file():
        raise OlivepressError(f"the ORT GenAI model builder wrote no genai_config.json (see {log_file})")
    if _adapter_added_after_build(model):
        from olivepress.passes.onnx.lora_graph import add_lora_paths
        from olivepress.runtime.adapters import model_file

        base_config = json.loads((model.folder / "config.json").read_text())
        count = add_lora_paths(model_file(out_dir), Path(model.adapter_path), base_config)
        ctx.log.info("LoRA paths added beside %d quantized MatMuls (float, for ExtractAdapters)", count)
    if config.search:
        _merge_search_options(genai_config, config.search)
    embeds = (
        (model.quantization_config() or {}).get("meta", {}).get("embeds")
        if model.quantization_method()
        else None
    )
    if embeds and config.precision in ("int4", "int8") and config.quantize_embeddings:
        from olivepress.passes.onnx.quantized_embeddings import carry_embeddings

        carry_embeddings(out_dir, embeds, ctx.log)
    return OnnxModel(path=str(out_dir))


def _extra_options(model: HfModel, config: Config) -> dict[str, Any]:
    options: dict[str, Any] = {"hf_remote": bool(model.load_kwargs.get("trust_remote_code", False))}
    if config.int4_block_size is not None:
        options["block_size"] = config.int4_block_size
    if config.int4_accuracy_level is not None:
        options["accuracy_level"] = config.int4_accuracy_level
    if config.shared_embeddings is not None:
        options["shared_embeddings"] = config.shared_embeddings
    if config.metadata_only:
        options["config_only"] = True
    excluded: list[str] = []
    if not config.quantize_embeddings and config.precision in ("int4", "int8"):
        excluded += ["/model/embed_tokens/Gather", "/lm_head/MatMul"]
    if _adapter_added_after_build(model):
        # Built without the adapter (lora_graph adds it afterwards), with q/k/v left unfused
        # so that each has an output of its own to add a LoRA path to.
        options["fuse_qkv"] = False
    elif model.adapter_path:
        options["adapter_path"] = model.adapter_path
        # LoRA weights stay float (they are lifted into an .onnx_adapter later); only the base
        # weights are quantised.
        if config.precision in ("int4", "int8"):
            excluded += _lora_nodes(model)
    if excluded:
        options["nodes_to_exclude"] = ",".join(excluded)
    options.update(config.extra_options)
    return {key: _option_text(value) for key, value in options.items()}


def _adapter_added_after_build(model: HfModel) -> bool:
    """The builder cannot put PEFT on its quantized-checkpoint model, so for an AWQ / GPTQ base
    the adapter goes in after the build (see lora_graph)."""
    return bool(model.adapter_path) and model.quantization_method() is not None


def _lora_nodes(model: HfModel) -> list[str]:
    from olivepress.models.families import builder_family
    from olivepress.runtime.adapters import lora_node_names, peft_adapter_config

    config = json.loads((model.folder / "config.json").read_text())
    family = builder_family(config)
    targets = peft_adapter_config(Path(model.adapter_path)).get("target_modules") or []
    if isinstance(targets, str):  # a regular expression: cover every projection the builder names
        targets = family.lora_targets
    builder_names = [name for target in targets for name in family.builder_modules(target)]
    return lora_node_names(config.get("num_hidden_layers", 0), builder_names)


def _adapt_builder_config(extra: dict[str, Any], model: HfModel) -> None:
    """Rewrite, in the config object the builder was handed (its parsed copy: the model folder
    is not touched), the fields it cannot read as transformers writes them. The builder reads
    config.json through AutoConfig, which would nest them again, so a rewritten file would not do."""
    from olivepress.models.families import find_family

    details = extra.get("hf_details")
    family = find_family(details["hf_config"]) if details else None
    if family is not None and family.adapt_builder_config is not None:
        family.adapt_builder_config(details["hf_config"])


def _option_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _merge_search_options(genai_config: Path, search: dict[str, Any]) -> None:
    data = json.loads(genai_config.read_text())
    data.setdefault("search", {}).update(search)
    genai_config.write_text(json.dumps(data, indent=4))

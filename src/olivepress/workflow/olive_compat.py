"""How olivepress treats each key and pass of Olive's config schema.

Olive's names are data (olive_surface.json, read from Olive's source by
scripts/extract_olive_surface.py). Each is one of:

- supported: an olivepress config field (or a pass Config field / OLIVE_ALIASES entry) takes it;
- accepted, no effect: it is dropped with one log warning saying why it does not apply here;
- refused: loading the config stops with one line saying why and what to do.

Supported keys are found from the config classes themselves, so the table in
docs/olive-compat.md (scripts/olive_compat_doc.py) cannot claim support that the code lacks;
tests/test_olive_compat.py checks that every Olive name has a treatment and that the doc is
current.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from olivepress.errors import OlivepressError

log = logging.getLogger("olivepress")

SUPPORTED, NO_EFFECT, REFUSED, UNCLASSIFIED = "supported", "accepted, no effect", "refused", "unclassified"


@dataclass(frozen=True)
class Treatment:
    status: str
    reason: str = ""


@cache
def olive_surface() -> dict[str, Any]:
    """Olive's config names as extracted from its source."""
    text = (resources.files("olivepress.workflow") / "olive_surface.json").read_text(encoding="utf-8")
    return json.loads(text)


# --- workflow sections ------------------------------------------------------------------

_LOCAL_ONLY = "olivepress runs workflows on this machine"
_NO_USER_CODE = (
    "olivepress data configs take local files and templates, not Python; preprocess the data into a JSONL "
    "file"
)

# section -> key -> (status, reason). Keys not listed here are supported when the olivepress
# config class of the section has a field of that name (see _section_fields).
SECTION_KEYS: dict[str, dict[str, Treatment]] = {
    "run+engine": {
        "engine": Treatment(SUPPORTED, "its keys are read as top-level keys"),
        "workflow_id": Treatment(NO_EFFECT, "olivepress names a run by its output_dir"),
        "no_artifacts": Treatment(
            NO_EFFECT, "olivepress writes only the model, footprint.json and the report into output_dir"
        ),
        "plot_pareto_frontier": Treatment(
            NO_EFFECT, "olivepress draws no plots; the report lists every candidate"
        ),
        "clean_evaluation_cache": Treatment(NO_EFFECT, "olivepress does not cache evaluation results"),
        "ort_log_severity_level": Treatment(NO_EFFECT, "ONNX Runtime's own log level stays at its default"),
        "ort_py_log_severity_level": Treatment(
            NO_EFFECT, "ONNX Runtime's own log level stays at its default"
        ),
        "log_to_file": Treatment(
            NO_EFFECT, "olivepress logs to the console; tool logs stay in their cache entries"
        ),
        "cache_config": Treatment(
            REFUSED,
            "olivepress's cache is a local folder; use cache_dir (a shared folder shares finished passes)",
        ),
        "enable_shared_cache": Treatment(
            REFUSED, "Olive's shared cache is an Azure blob store; point cache_dir at a shared folder instead"
        ),
        "builds": Treatment(
            REFUSED, "olivepress runs one workflow per config; list pass sequences in pass_flows"
        ),
        "max_concurrent_builds": Treatment(REFUSED, "olivepress runs one workflow per config (no builds)"),
    },
    "pass_entry": {
        "type": Treatment(SUPPORTED),
        "config": Treatment(SUPPORTED, "its keys are read as the pass's options"),
        "host": Treatment(NO_EFFECT, f"{_LOCAL_ONLY}: every pass runs on the workflow's host"),
        "evaluator": Treatment(NO_EFFECT, "the workflow's evaluator measures the output of the whole flow"),
    },
    "system": {
        "type": Treatment(SUPPORTED, "LocalSystem only; other types are refused"),
        "config": Treatment(SUPPORTED, "its keys are read as the system's keys"),
    },
    "system_config": {
        "hf_token": Treatment(NO_EFFECT, "olivepress never contacts the Hugging Face hub"),
        **{
            key: Treatment(REFUSED, f"a key of Olive's Docker / PythonEnvironment systems; {_LOCAL_ONLY}")
            for key in (
                "build_args",
                "build_context_path",
                "clean_image",
                "dockerfile",
                "environment_variables",
                "image_name",
                "prepend_to_path",
                "python_environment_path",
                "run_params",
                "work_dir",
            )
        },
    },
    "accelerator": {
        "memory": Treatment(NO_EFFECT, "olivepress does not budget device memory"),
    },
    "data_config": {
        "user_script": Treatment(REFUSED, _NO_USER_CODE),
        "script_dir": Treatment(REFUSED, _NO_USER_CODE),
        "post_process_data_config": Treatment(
            NO_EFFECT, "olivepress's metrics read model outputs themselves (no post-processing step)"
        ),
        "dataloader_config": Treatment(
            NO_EFFECT, "passes and metrics choose their own batches (their batch_size options)"
        ),
    },
    "load_dataset": {
        "subset": Treatment(
            SUPPORTED,
            "only with data_name wikitext, which falls back to the shipped calibration text offline",
        ),
    },
    "pre_process_text_generation": {
        "max_seq_len": Treatment(SUPPORTED, "as source_max_len"),
        "strategy": Treatment(SUPPORTED, "as corpus_strategy (join, line-by-line)"),
        "chat_template": Treatment(SUPPORTED, "true: as use_chat_template"),
        "padding_side": Treatment(NO_EFFECT, "olivepress pads on the right"),
        "add_special_tokens": Treatment(NO_EFFECT, "the tokenizer's own special tokens are used"),
        "processing_batch_size": Treatment(NO_EFFECT, "records are tokenized in one go"),
        "user_script": Treatment(REFUSED, _NO_USER_CODE),
        "script_dir": Treatment(REFUSED, _NO_USER_CODE),
        "text_formatting_func": Treatment(REFUSED, _NO_USER_CODE + "; or use text_template"),
        "message_col": Treatment(REFUSED, "name the chat field 'messages'"),
        "drop_short_sequences": Treatment(REFUSED, "not implemented; join the samples (strategy join)"),
        "stride": Treatment(REFUSED, "sliding windows are not implemented; use strategy join"),
        "joiner": Treatment(REFUSED, "samples are joined with the tokenizer's EOS token"),
        "random_seed": Treatment(REFUSED, "random sampling strategies are not implemented"),
        "random_retries": Treatment(REFUSED, "random sampling strategies are not implemented"),
    },
    "input_model_hf": {
        "io_config": Treatment(NO_EFFECT, "the ONNX passes take inputs and outputs from the model's task"),
        "model_attributes": Treatment(NO_EFFECT, "olivepress reads the model's own config.json"),
        "test_model_path": Treatment(NO_EFFECT, "a test-only option of Olive"),
        "test_model_config": Treatment(NO_EFFECT, "a test-only option of Olive"),
    },
    "input_model_onnx": {
        "onnx_file_name": Treatment(NO_EFFECT, "olivepress reads the one .onnx file of the folder"),
        "inference_settings": Treatment(NO_EFFECT, "olivepress picks providers from the target system"),
        "model_attributes": Treatment(NO_EFFECT, "olivepress reads the model folder's own files"),
        "use_ort_extensions": Treatment(REFUSED, "ONNX Runtime extensions custom ops are not loaded"),
        "external_initializers_file_name": Treatment(REFUSED, "keep external data beside the .onnx file"),
        "constant_inputs_file_name": Treatment(REFUSED, "constant inputs files are not read"),
    },
}


def _section_fields() -> dict[str, set[str]]:
    from olivepress.data.config import DataConfig, LoadDatasetConfig, PreProcessDataConfig
    from olivepress.workflow.config import AcceleratorConfig, InputModelConfig, SystemConfig, WorkflowConfig

    return {
        "run+engine": set(WorkflowConfig.model_fields),
        "pass_entry": set(),
        "system": set(SystemConfig.model_fields),
        "system_config": set(SystemConfig.model_fields),
        "accelerator": set(AcceleratorConfig.model_fields),
        "data_config": set(DataConfig.model_fields),
        "load_dataset": set(LoadDatasetConfig.model_fields),
        "pre_process_text_generation": set(PreProcessDataConfig.model_fields),
        "input_model_hf": set(InputModelConfig.model_fields),
        "input_model_onnx": set(InputModelConfig.model_fields),
    }


def olive_section_keys() -> dict[str, list[str]]:
    """Olive's keys per section, in the sections olivepress classifies."""
    sections = olive_surface()["sections"]
    huggingface = sections["load_dataset"]["huggingface_dataset"]
    return {
        "run+engine": list(dict.fromkeys(sections["run"] + sections["engine"])),
        "pass_entry": sections["pass_entry"],
        "system": sections["system"],
        "system_config": sections["system_config"],
        "accelerator": sections["accelerator"],
        "data_config": sections["data_config"],
        "load_dataset": huggingface,
        "pre_process_text_generation": sections["pre_process_text_generation"],
        "input_model_hf": sections["input_model_hf"],
        "input_model_onnx": sections["input_model_onnx"],
    }


def olive_names_for(model: type) -> list[str]:
    """Olive's names that `model` (a config class) takes or drops, for 'did you mean' hints."""
    from olivepress.data.config import DataConfig, LoadDatasetConfig, PreProcessDataConfig
    from olivepress.workflow.config import AcceleratorConfig, InputModelConfig, SystemConfig, WorkflowConfig

    sections = {
        WorkflowConfig: ["run+engine"],
        SystemConfig: ["system_config"],
        AcceleratorConfig: ["accelerator"],
        DataConfig: ["data_config"],
        LoadDatasetConfig: ["load_dataset"],
        PreProcessDataConfig: ["pre_process_text_generation"],
        InputModelConfig: ["input_model_hf", "input_model_onnx"],
    }
    names = [name for section in sections.get(model, []) for name in SECTION_KEYS.get(section, {})]
    return names + list(getattr(model, "OLIVE_ALIASES", {}))


def key_treatment(section: str, key: str) -> Treatment:
    listed = SECTION_KEYS.get(section, {}).get(key)
    if listed is not None:
        return listed
    if key in _section_fields()[section]:
        return Treatment(SUPPORTED)
    return Treatment(UNCLASSIFIED)


def apply_key_treatments(section: str, mapping: dict[str, Any], where: str) -> dict[str, Any]:
    """`mapping` without the keys that have no effect here (one warning each); an error for a
    refused key. Unknown keys are left for validation (which suggests the closest name)."""
    kept = {}
    for key, value in mapping.items():
        treatment = SECTION_KEYS.get(section, {}).get(key)
        if treatment is None or treatment.status == SUPPORTED:
            kept[key] = value
        elif treatment.status == NO_EFFECT:
            log.warning("%s'%s' has no effect in olivepress: %s", where, key, treatment.reason)
        else:
            raise OlivepressError(
                f"{where}'{key}' is an Olive option olivepress does not support: {treatment.reason}"
            )
    return kept


# --- passes -----------------------------------------------------------------------------

_ONNX_OUTPUT = (
    "save_as_external_data",
    "all_tensors_to_one_file",
    "external_data_name",
    "size_threshold",
    "convert_attribute",
)
_NOT_ORT = "olivepress builds models for ONNX Runtime (and ONNX Runtime GenAI) on CPU and GPU"

# Olive passes olivepress has no module for, by the reason why.
REFUSED_PASSES: dict[str, str] = {
    **dict.fromkeys(
        (
            "OpenVINOConversion",
            "OpenVINOEncapsulation",
            "OpenVINOIoUpdate",
            "OpenVINOOptimumConversion",
            "OpenVINOQuantization",
            "OpenVINOQuantizationWithAccuracy",
            "OpenVINOWeightCompression",
        ),
        f"an OpenVINO pass; {_NOT_ORT}",
    ),
    **dict.fromkeys(
        (
            "QNNContextBinaryGenerator",
            "QNNConversion",
            "QNNModelLibGenerator",
            "QNNPreprocess",
            "QairtEncapsulation",
            "QairtGenAIBuilder",
            "QairtMHA2SHA",
            "QairtPipelinePass",
            "QairtPreparation",
            "EPContextBinaryGenerator",
            "StaticLLM",
            "SplitModel",
            "CaptureSplitInfo",
            "CaptureLayerAnnotations",
        ),
        f"prepares models for Qualcomm NPUs (QNN / QAIRT) and static-shape NPU runtimes; {_NOT_ORT}",
    ),
    **dict.fromkeys(
        (
            "VitisAIAddMetaData",
            "VitisGenerateModelLLM",
            "VitisGenerateModelSD",
            "RyzenGenerateModelLLM",
            "QuarkQuantization",
            "QuarkQuantizationVitisAI",
        ),
        f"an AMD Ryzen AI / Vitis AI / Quark pass; {_NOT_ORT}",
    ),
    **dict.fromkeys(
        ("NVModelOptQuantization", "NVModelOptGraphSurgery"),
        "needs NVIDIA ModelOpt; use AWQ or GPTQ (CPU-capable)",
    ),
    **dict.fromkeys(
        ("IncQuantization", "IncDynamicQuantization", "IncStaticQuantization"),
        "needs Intel Neural Compressor; use OnnxDynamicQuantization / OnnxStaticQuantization",
    ),
    "AimetQuantization": "needs Qualcomm AIMET; use OnnxStaticQuantization",
    "OnnxQuantization": "pick one: OnnxDynamicQuantization or OnnxStaticQuantization",
    "OnnxBnb4Quantization": (
        "bitsandbytes 4-bit ONNX weights run on CUDA only; use OnnxMatMul4Quantizer or ModelBuilder int4"
    ),
    "OnnxKQuantQuantization": "not implemented; use ModelBuilder int4 (or GPTQ / AWQ before it)",
    "KQuant": "not implemented; use GPTQ or AWQ",
    "MatMulNBitsToQDQ": "olivepress keeps MatMulNBits (what ONNX Runtime's CPU and CUDA kernels run)",
    "AutoClip": "olivepress's AWQ and GPTQ search clipping ranges themselves (their clip option)",
    "GptqModel": "use GPTQ (olivepress's CPU implementation; same checkpoint layout)",
    "LoftQ": "not implemented; use QLoRA or LoRA on a quantized model",
    "SDLoRA": "Stable Diffusion LoRA; olivepress fine-tunes language models",
    "QuaRot": "rotations are not implemented; use GPTQ or AWQ",
    "SpinQuant": "rotations are not implemented; use GPTQ or AWQ",
    "SliceGPT": "pruning is not implemented",
    "SparseGPT": "pruning is not implemented",
    "ConvertHfToGGUF": "olivepress reads GGUF but does not write it; llama.cpp's convert_hf_to_gguf.py does",
    "MobiusBuilder": "use ModelBuilder (ONNX Runtime GenAI's builder)",
    "OptimumConversion": "use OnnxConversion (or ModelBuilder for decoder LLMs)",
    "OptimumMerging": "ModelBuilder writes one decoder with a KV cache; nothing to merge",
    "OnnxDiscrepancyCheck": "use an evaluator (perplexity, accuracy) or `olivepress evaluate`",
    "OrtSessionParamsTuning": (
        "not implemented; the latency and throughput metrics measure a session as configured"
    ),
    "OrtMixedPrecision": "use OnnxFloatToFloat16 with op_block_list",
    "MixedPrecisionOverrides": "an NPU QDQ pass; olivepress writes MatMulNBits / QOperator models",
    "OnnxQuantizationPreprocess": "the quantization passes run ONNX Runtime's preprocessing themselves",
    "OnnxScriptFusion": "use OrtTransformersOptimization",
    "OnnxPeepholeOptimizer": "use OrtTransformersOptimization",
    "OnnxOpVersionConversion": "set target_opset on OnnxConversion",
    "OnnxIODataTypeConverter": "use OnnxFloatToFloat16 (keep_io_types false)",
    "DynamicToFixedShape": (
        "static shapes are for NPUs; olivepress keeps dynamic axes (OnnxConversion dynamic false fixes them)"
    ),
    "InputNCHWtoNHWC": "an image-model pass; olivepress converts language and encoder models",
    "ComposeOnnxModels": "ModelBuilder writes one model folder; nothing to compose",
    "AddOliveMetadata": "olivepress records what it did in footprint.json",
    "SaveTestModelConfig": "a test-only pass of Olive",
}

# Options of supported passes that do not apply here (dropped with a warning) or are refused.
# Keys: olivepress pass names ("*" for every pass).
PASS_OPTIONS: dict[str, dict[str, Treatment]] = {
    "*": {
        "user_script": Treatment(REFUSED, "this pass does not run Python from the config"),
        "script_dir": Treatment(REFUSED, "this pass does not run Python from the config"),
    },
    "OnnxConversion": {
        "save_metadata_for_token_generation": Treatment(
            NO_EFFECT, "the folder always carries config.json, generation config and tokenizer files"
        ),
        "past_key_value_name": Treatment(
            NO_EFFECT, "OnnxConversion exports without a KV cache (ModelBuilder adds one)"
        ),
        "device": Treatment(NO_EFFECT, "export runs on the CPU"),
        "torch_dtype": Treatment(NO_EFFECT, "export traces in float32; OnnxFloatToFloat16 makes fp16"),
        "parallel_jobs": Treatment(NO_EFFECT, "one model is exported at a time"),
        "merge_adapter_weights": Treatment(NO_EFFECT, "a PEFT adapter on the input is always merged first"),
        "optimize": Treatment(NO_EFFECT, "use OrtTransformersOptimization after the export"),
    },
    "OrtTransformersOptimization": {
        "num_key_value_heads": Treatment(NO_EFFECT, "read from the model's config.json"),
        "force_fp32_nodes": Treatment(REFUSED, "not implemented; use force_fp32_ops"),
        "force_fp16_inputs": Treatment(REFUSED, "not implemented"),
        "use_gqa": Treatment(REFUSED, "GroupQueryAttention graphs come from ModelBuilder"),
        "input_int32": Treatment(REFUSED, "not implemented; inputs stay int64"),
    },
    "OnnxFloatToFloat16": {
        "use_symbolic_shape_infer": Treatment(NO_EFFECT, "onnxruntime's converter infers shapes itself"),
        "op_include_list": Treatment(REFUSED, "not implemented; use op_block_list"),
        "node_include_list": Treatment(REFUSED, "not implemented; use node_block_list"),
    },
    "OnnxDynamicQuantization": {"quant_mode": Treatment(NO_EFFECT, "this pass is dynamic by its type")},
    "OnnxStaticQuantization": {"quant_mode": Treatment(NO_EFFECT, "this pass is static by its type")},
    "OnnxMatMul4Quantizer": {
        "axis": Treatment(NO_EFFECT, "blocks run along the input axis (the only one MatMulNBits takes)"),
        "bits": Treatment(REFUSED, "this pass writes 4-bit weights; use ModelBuilder int8 for 8 bits"),
    },
    "ExtractAdapters": {
        "adapter_type": Treatment(
            NO_EFFECT, "LoRA adapters are extracted (the only kind ORT GenAI switches)"
        ),
        "make_inputs": Treatment(
            NO_EFFECT, "adapter weights always become inputs (ORT GenAI switches them per request)"
        ),
        "dynamic_lora_r": Treatment(NO_EFFECT, "the rank axis is always dynamic"),
        "optional_inputs": Treatment(NO_EFFECT, "the inputs have defaults (no adapter) in the model"),
        "save_format": Treatment(NO_EFFECT, "adapters are written as .onnx_adapter files"),
        **{key: Treatment(NO_EFFECT, "the model keeps the layout of its input") for key in _ONNX_OUTPUT},
    },
    "AWQ": {
        "input_model_dtype": Treatment(NO_EFFECT, "AWQ computes in float32 on the CPU"),
        "version": Treatment(SUPPORTED, "gemm only (the layout the ORT GenAI builder reads)"),
        "export_compatible": Treatment(
            NO_EFFECT, "the checkpoint is always exportable (ModelBuilder reads it)"
        ),
    },
    "GPTQ": {
        "layers_block_name": Treatment(NO_EFFECT, "decoder layers are found from the model"),
        "outside_layer_modules": Treatment(NO_EFFECT, "decoder layers are found from the model"),
        "inside_layer_modules": Treatment(
            NO_EFFECT, "every Linear of a decoder layer is quantized (see overrides)"
        ),
        "static_groups": Treatment(NO_EFFECT, "groups are taken as GPTQ reaches them (static_groups false)"),
        "true_sequential": Treatment(
            NO_EFFECT, "layers are quantized in order, each on the quantized previous ones"
        ),
    },
    "LoRA": {
        "torch_dtype": Treatment(
            NO_EFFECT, "training runs in float32 on the CPU, the device's dtype on a GPU"
        ),
        "device_map": Treatment(NO_EFFECT, "the model is placed on the workflow's device"),
        "allow_tf32": Treatment(NO_EFFECT, "a CUDA matmul setting; left at torch's default"),
        "ephemeral_gpu_offload": Treatment(NO_EFFECT, "models are trained where they are loaded"),
        "save_quant_config": Treatment(NO_EFFECT, "QLoRA always writes its quantization settings"),
    },
    "LoHa": {
        "lora_dropout": Treatment(
            NO_EFFECT, "LoHa drops ranks or modules (rank_dropout, module_dropout), not inputs"
        ),
    },
    "LoKr": {
        "lora_dropout": Treatment(
            NO_EFFECT, "LoKr drops ranks or modules (rank_dropout, module_dropout), not inputs"
        ),
        **{
            key: Treatment(
                REFUSED, "not exposed; olivepress's LoKr takes rank, alpha, dropout and target_modules"
            )
            for key in (
                "decompose_both",
                "rank_dropout_scale",
                "use_effective_conv2d",
                "exclude_modules",
                "init_weights",
                "layers_to_transform",
                "layers_pattern",
                "rank_pattern",
                "alpha_pattern",
            )
        },
    },
    "quantizers": {
        "quantize_vision": Treatment(NO_EFFECT, "olivepress quantizes language models (no vision tower)"),
        "moe": Treatment(REFUSED, "mixture-of-experts models are not supported by olivepress's quantizers"),
        "moe_fallback_threshold": Treatment(REFUSED, "mixture-of-experts models are not supported"),
        "moe_fallback_min_k_multiple": Treatment(REFUSED, "mixture-of-experts models are not supported"),
    },
}
_ADAPTER_PASSES = ("LoRA", "QLoRA", "DoRA", "LoHa", "LoKr")
_QUANTIZERS = ("RTN", "GPTQ", "AWQ")


def _option_tables(pass_name: str) -> list[dict[str, Treatment]]:
    tables = [PASS_OPTIONS.get(pass_name, {})]
    if pass_name in _ADAPTER_PASSES:
        tables.append(PASS_OPTIONS["LoRA"])
    if pass_name in _QUANTIZERS:
        tables.append(PASS_OPTIONS["quantizers"])
    return [*tables, PASS_OPTIONS["*"]]


def accepted_options(config_cls: type) -> set[str]:
    """Option names a pass Config takes: its fields and the Olive spellings it maps onto them."""
    return set(config_cls.model_fields) | set(getattr(config_cls, "OLIVE_ALIASES", {}))


def option_treatment(pass_name: str, config_cls: type, option: str) -> Treatment:
    if option in accepted_options(config_cls):
        return Treatment(SUPPORTED)
    for table in _option_tables(pass_name):
        if option in table:
            return table[option]
    return Treatment(UNCLASSIFIED)


def apply_option_treatments(
    pass_name: str, config_cls: type, options: dict[str, Any], where: str
) -> dict[str, Any]:
    """The pass's options without those that have no effect here (one warning each); an error
    for a refused one. Unknown options are left for validation ('did you mean')."""
    kept = {}
    for key, value in options.items():
        treatment = option_treatment(pass_name, config_cls, key)
        if treatment.status == NO_EFFECT:
            log.warning("%s: '%s' has no effect in olivepress: %s", where, key, treatment.reason)
        elif treatment.status == REFUSED:
            raise OlivepressError(
                f"{where}: '{key}' is an Olive option olivepress does not support: {treatment.reason}"
            )
        else:
            kept[key] = value
    return kept


def check_pass_type(type_name: str) -> None:
    """An error naming the reason when `type_name` is an Olive pass olivepress does not have."""
    by_lower = {name.lower(): name for name in REFUSED_PASSES}
    name = by_lower.get(type_name.lower())
    if name is not None:
        raise OlivepressError(f"Olive pass '{name}' is not available in olivepress: {REFUSED_PASSES[name]}")


# --- the generated table ------------------------------------------------------------------

_SECTION_TITLES = {
    "run+engine": "Top level and `engine`",
    "pass_entry": "A pass entry (beside its options)",
    "system": "`systems.<name>`",
    "system_config": "`systems.<name>.config`",
    "accelerator": "`systems.<name>.accelerators[]`",
    "data_config": "`data_configs[]`",
    "load_dataset": "`data_configs[].load_dataset_config` (huggingface_dataset)",
    "pre_process_text_generation": "`data_configs[].pre_process_data_config` (text generation)",
    "input_model_hf": "`input_model` (HfModel)",
    "input_model_onnx": "`input_model` (OnnxModel)",
}


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render_markdown() -> str:
    """docs/olive-compat.md: every Olive pass and key with what olivepress does with it."""
    from olivepress.passes.onnx.graph_surgeries import SURGEONS
    from olivepress.passes.registry import find_pass

    surface = olive_surface()
    lines = [
        "# Olive config compatibility",
        "",
        "Generated by `scripts/olive_compat_doc.py` from olivepress's own tables "
        "(`src/olivepress/workflow/olive_compat.py` and each pass's Config) and Olive's names, read from "
        f"Olive's source at commit `{surface['olive_commit'][:12]}` "
        "(`src/olivepress/workflow/olive_surface.json`). "
        "Do not edit by hand.",
        "",
        f"- **{SUPPORTED}**: olivepress implements it.",
        f"- **{NO_EFFECT}**: the config loads; the key is dropped with one warning saying why.",
        f"- **{REFUSED}**: loading stops with one line saying why and what to use instead.",
        "",
        "Keys that are neither Olive's nor olivepress's are errors that suggest the closest known name.",
        "",
        "## Workflow keys",
    ]
    for section, keys in olive_section_keys().items():
        lines += [
            "",
            f"### {_SECTION_TITLES[section]}",
            "",
            _row("key", "olivepress", "note"),
            _row("---", "---", "---"),
        ]
        for key in keys:
            treatment = key_treatment(section, key)
            lines.append(_row(f"`{key}`", treatment.status, treatment.reason))
    counts = {SUPPORTED: 0, REFUSED: 0}
    pass_rows = []
    option_sections = []
    for name, spec_data in surface["passes"].items():
        if name in REFUSED_PASSES:
            counts[REFUSED] += 1
            pass_rows.append(_row(f"`{name}`", REFUSED, REFUSED_PASSES[name]))
            continue
        spec = find_pass(name)
        counts[SUPPORTED] += 1
        note = "" if spec.name == name else f"as {spec.name}"
        pass_rows.append(_row(f"`{name}`", SUPPORTED, note))
        config_cls = spec.module.Config
        rows = [_row("option", "olivepress", "note"), _row("---", "---", "---")]
        for option in spec_data["options"]:
            treatment = option_treatment(spec.name, config_cls, option)
            alias = getattr(config_cls, "OLIVE_ALIASES", {}).get(option)
            reason = treatment.reason or (f"as {alias}" if alias and alias != option else "")
            rows.append(_row(f"`{option}`", treatment.status, reason))
        if spec_data["options"]:
            option_sections += ["", f"### {name}", "", *rows]
    lines += [
        "",
        f"## Passes ({counts[SUPPORTED]} supported, {counts[REFUSED]} refused)",
        "",
        _row("Olive pass", "olivepress", "note"),
        _row("---", "---", "---"),
        *pass_rows,
    ]
    lines += ["", "## Options of the supported passes", *option_sections]
    lines += ["", "## GraphSurgeries surgeons", "", _row("surgeon", "olivepress"), _row("---", "---")]
    for surgeon in surface["surgeons"]:
        lines.append(_row(f"`{surgeon}`", SUPPORTED if surgeon in SURGEONS else REFUSED))
    return "\n".join(lines) + "\n"

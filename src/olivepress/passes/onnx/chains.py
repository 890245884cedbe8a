"""The pass chain `auto-opt` runs on the generic ONNX path (models the ORT GenAI builder does
not build: encoders, classifiers, ...), for a target provider and precision.

    generic_chain("cpu", "CPUExecutionProvider", "int8")
    -> [("OnnxConversion", {}), ("OrtTransformersOptimization", {}), ("OnnxDynamicQuantization", {...})]

The rules, per provider:

- CPU, CUDA, ROCm/MIGraphX, DirectML, WebGPU run onnxruntime's fused transformer ops, so
  the export is followed by OrtTransformersOptimization (GPU fusions on GPUs, and float16
  there for fp16).
- TensorRT, NvTensorRtRtx, OpenVINO and QNN compile the graph themselves and do not take
  onnxruntime's contrib ops: no fusions; fp16 and int8 are what their compilers read.
- int8: dynamic quantization on CPU (no calibration, fastest there); static QDQ elsewhere,
  calibrated on the shipped calibration text (NPUs, TensorRT and OpenVINO read QDQ).
- int4: block-wise RTN MatMulNBits where a kernel exists (CPU, CUDA, DirectML, WebGPU); QDQ
  int4 for NvTensorRtRtx; refused elsewhere.

The last pass writes inference_settings.json (providers, provider and session options) into
the output, so the model says how to open it. A provider this onnxruntime build lacks still
gets its chain: every pass runs on a CPU, only running the result needs the provider
(`provider_available` tells the caller whether it could check that here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from olivepress.errors import OlivepressError, did_you_mean
from olivepress.targets import ALIASES, DEVICES, canonical_provider, default_provider

Chain = list[tuple[str, dict[str, Any]]]

PRECISIONS = {
    "fp32": "fp32",
    "float32": "fp32",
    "fp16": "fp16",
    "float16": "fp16",
    "int8": "int8",
    "int4": "int4",
}


@dataclass(frozen=True)
class Target:
    provider: str  # as onnxruntime spells it
    fusions: bool  # runs onnxruntime's fused contrib ops (Attention, SkipLayerNormalization, ...)
    gpu: bool
    int4: str | None  # "QOperator" (MatMulNBits), "QDQ", or None: no int4 kernels
    int8_static: dict[str, Any] = field(
        default_factory=dict
    )  # OnnxStaticQuantization options; {} = dynamic (CPU)
    int8_provider_options: dict[str, Any] = field(default_factory=dict)
    fp16_provider_options: dict[str, Any] = field(default_factory=dict)
    session_options: dict[str, Any] = field(default_factory=dict)
    provider_options: dict[str, Any] = field(default_factory=dict)
    conversion: dict[str, Any] = field(default_factory=dict)


_QDQ = {"quant_format": "QDQ"}
# TensorRT's explicit quantization reads symmetric int8 only.
_QDQ_SYMMETRIC = {
    **_QDQ,
    "activation_type": "QInt8",
    "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True},
}

TARGETS = {
    "cpu": Target("CPUExecutionProvider", fusions=True, gpu=False, int4="QOperator"),
    "cuda": Target("CUDAExecutionProvider", fusions=True, gpu=True, int4="QOperator", int8_static=_QDQ),
    "migraphx": Target("MIGraphXExecutionProvider", fusions=True, gpu=True, int4=None, int8_static=_QDQ),
    "dml": Target(
        "DmlExecutionProvider",
        fusions=True,
        gpu=True,
        int4="QOperator",
        int8_static=_QDQ,
        # DirectML needs sequential execution without memory patterns.
        session_options={"enable_mem_pattern": False, "execution_mode": "ORT_SEQUENTIAL"},
    ),
    "webgpu": Target("WebGpuExecutionProvider", fusions=True, gpu=True, int4="QOperator"),
    "tensorrt": Target(
        "TensorrtExecutionProvider",
        fusions=False,
        gpu=True,
        int4=None,
        int8_static=_QDQ_SYMMETRIC,
        int8_provider_options={"trt_int8_enable": True},
        fp16_provider_options={"trt_fp16_enable": True},
    ),
    "nvtensorrtrtx": Target(
        "NvTensorRTRTXExecutionProvider",
        fusions=False,
        gpu=True,
        int4="QDQ",
        int8_static=_QDQ_SYMMETRIC,
    ),
    "openvino": Target(
        "OpenVINOExecutionProvider",
        fusions=False,
        gpu=False,
        int4=None,
        int8_static={**_QDQ, "activation_type": "QUInt8"},
        fp16_provider_options={"precision": "FP16"},
    ),
    "qnn": Target(
        "QNNExecutionProvider",
        fusions=False,
        gpu=False,
        int4=None,
        # The HTP backend runs 16-bit activations with 8-bit weights well, and needs fixed shapes.
        int8_static={**_QDQ, "activation_type": "QUInt16", "weight_type": "QUInt8", "per_channel": False},
        provider_options={"backend_type": "htp"},
        conversion={"dynamic": False, "batch_size": 1, "sequence_length": 128},
    ),
}
# ROCm's chain is MIGraphX's: AMD's current graph compiler, which onnxruntime now ships instead.
_RUNS_AS = {"ROCMExecutionProvider": "MIGraphXExecutionProvider"}
_BY_PROVIDER = {target.provider: target for target in TARGETS.values()}


def generic_chain(device: str, provider: str | None, precision: str) -> Chain:
    """The passes, as (pass type, options), that turn a Hugging Face model into an ONNX model
    for `provider` at `precision` (fp32, fp16, int8, int4)."""
    return _plan(device, provider, precision)[0]


def describe_generic_chain(device: str, provider: str | None, precision: str) -> str:
    """One line for people: what generic_chain(...) does and why."""
    return _plan(device, provider, precision)[1]


def provider_available(provider: str) -> bool:
    """Whether this onnxruntime build has the provider (else the chain's output is unverified here)."""
    import onnxruntime as ort

    return target_for("gpu", provider).provider in ort.get_available_providers()


def target_for(device: str, provider: str | None) -> Target:
    device = (device or "cpu").lower()
    if device not in DEVICES:
        raise OlivepressError(
            f"device '{device}' is not one of {', '.join(DEVICES)}{did_you_mean(device, DEVICES)}"
        )
    name = canonical_provider(provider) if provider else default_provider(device)
    target = _BY_PROVIDER.get(_RUNS_AS.get(name, name)) if name else None
    if target is None:
        known = ", ".join(target.provider for target in TARGETS.values())
        raise OlivepressError(
            f"no generic ONNX chain for provider '{provider}'{did_you_mean(provider or '', ALIASES)}; "
            f"known: {known}"
        )
    return target


def calibration_data_config() -> dict[str, Any]:
    """An inline data config over the calibration prose that ships with olivepress."""
    path = resources.files("olivepress.data") / "text" / "calibration.txt"
    return {
        "name": "shipped_calibration",
        "load_dataset_config": {"data_name": "text", "data_files": str(path)},
    }


def _plan(device: str, provider: str | None, precision: str) -> tuple[Chain, str]:
    device = (device or "cpu").lower()
    target = target_for(device, provider)
    wanted = PRECISIONS.get(precision.lower())
    if wanted is None:
        raise OlivepressError(
            f"precision '{precision}' is not one of fp32, fp16, int8, "
            f"int4{did_you_mean(precision, PRECISIONS)}"
        )
    name = target.provider
    chain: Chain = [("OnnxConversion", dict(target.conversion))]
    steps = [
        "export (OnnxConversion"
        + (", fixed shapes" if target.conversion.get("dynamic") is False else "")
        + ")"
    ]
    notes = []
    provider_options = dict(target.provider_options)
    if name == "OpenVINOExecutionProvider":
        provider_options["device_type"] = device.upper()

    if target.fusions:
        options: dict[str, Any] = {"use_gpu": True} if target.gpu else {}
        if wanted == "fp16":
            options |= {"float16": True, "keep_io_types": True}
        chain.append(("OrtTransformersOptimization", options))
        steps.append(
            "onnxruntime transformer fusions"
            + (" for GPU" if target.gpu else "")
            + (" in float16" if wanted == "fp16" else "")
        )
        if wanted == "fp16" and not target.gpu:
            notes.append("fp16 on a CPU saves size, not time: most CPU kernels compute in float32")
    elif wanted == "fp16":
        if target.fp16_provider_options:
            provider_options |= target.fp16_provider_options
            steps.append(f"{name} computes in float16 (provider option)")
        else:
            chain.append(("OnnxFloatToFloat16", {"keep_io_types": True}))
            steps.append("float16 weights and ops (OnnxFloatToFloat16)")

    if wanted == "int8":
        if not target.int8_static and name != "CPUExecutionProvider":
            raise OlivepressError(f"{name} has no int8 kernels for this path; use fp16 or int4 for it")
        if not target.int8_static:
            chain.append(("OnnxDynamicQuantization", {"per_channel": True}))
            steps.append("int8 dynamic quantization (per-channel weights)")
        else:
            chain.append(
                ("OnnxStaticQuantization", {**target.int8_static, "data_config": calibration_data_config()})
            )
            steps.append(
                "int8 static QDQ quantization calibrated on the shipped text "
                f"({target.int8_static.get('activation_type', 'QUInt8')} activations)"
            )
            provider_options |= target.int8_provider_options
            if name in ("CUDAExecutionProvider", "MIGraphXExecutionProvider", "DmlExecutionProvider"):
                notes.append(
                    f"{name} runs QDQ int8 mostly by dequantizing: expect a smaller model, not a faster one"
                )
    elif wanted == "int4":
        if target.int4 is None:
            raise OlivepressError(f"{name} has no int4 (MatMulNBits) kernels; use int8 or fp16 for it")
        options = {"block_size": 32, "is_symmetric": True}
        if name == "CPUExecutionProvider":
            options["accuracy_level"] = 4  # int8 compute: the fast MatMulNBits path on CPUs
        if target.int4 == "QDQ":
            options["quant_format"] = "QDQ"
            chain[0][1]["target_opset"] = 21  # int4 DequantizeLinear
        chain.append(("OnnxMatMul4Quantizer", options))
        steps.append(
            f"int4 block-wise RTN weights ({'MatMulNBits' if target.int4 == 'QOperator' else 'QDQ'}, "
            "block 32)"
        )
        if target.fusions:
            notes.append(
                "the weights inside fused Attention ops stay float; int4 pays off on large MatMuls, "
                "less on small encoders"
            )

    providers = [name] + ([] if name == "CPUExecutionProvider" else ["CPUExecutionProvider"])
    settings = {
        "execution_providers": providers,
        "provider_options": [provider_options] + [{} for _ in providers[1:]],
        "session_options": {"graph_optimization_level": "ORT_ENABLE_ALL", **target.session_options},
    }
    chain[-1][1]["inference_settings"] = settings
    description = f"{wanted} for {name}: " + " -> ".join(steps)
    if notes:
        description += " (" + "; ".join(notes) + ")"
    return chain, description

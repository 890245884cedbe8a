"""Execution providers and the devices they run on: the one table that auto-opt, workflow
configs, the ORT GenAI builder pass and the generic ONNX chains all read.

    resolve_target(None, "cuda")  -> ("gpu", "CUDAExecutionProvider")
    resolve_target("npu", None)   -> ("npu", "QNNExecutionProvider")
"""

from __future__ import annotations

from olivepress.errors import OlivepressError, did_you_mean

DEVICES = ("cpu", "gpu", "npu")

# Every provider as onnxruntime spells it -> the device it runs on.
PROVIDER_DEVICES = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "gpu",
    "TensorrtExecutionProvider": "gpu",
    "NvTensorRTRTXExecutionProvider": "gpu",
    "ROCMExecutionProvider": "gpu",
    "MIGraphXExecutionProvider": "gpu",
    "DmlExecutionProvider": "gpu",
    "WebGpuExecutionProvider": "gpu",
    "QNNExecutionProvider": "npu",
    "OpenVINOExecutionProvider": "npu",
    "VitisAIExecutionProvider": "npu",
    "CoreMLExecutionProvider": "npu",
}
DEFAULT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "npu": "QNNExecutionProvider",
}

# Providers that also run on devices other than their own: DirectML and WebGPU on whatever
# adapter the OS offers, OpenVINO on Intel CPUs, GPUs and NPUs (its device_type option).
ANY_DEVICE = frozenset({"DmlExecutionProvider", "OpenVINOExecutionProvider", "WebGpuExecutionProvider"})

# Names people write for a provider besides its own: the name without "ExecutionProvider"
# (any case), and these.
_EXTRA_ALIASES = {
    "gpu": "CUDAExecutionProvider",
    "npu": "QNNExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "directml": "DmlExecutionProvider",
}
ALIASES = {
    **{name.lower(): name for name in PROVIDER_DEVICES},
    **{name.lower().removesuffix("executionprovider"): name for name in PROVIDER_DEVICES},
    **_EXTRA_ALIASES,
}


def canonical_provider(name: str) -> str | None:
    """The provider as onnxruntime spells it (`cuda` -> CUDAExecutionProvider); None if unknown."""
    return ALIASES.get(name.lower())


def default_provider(device: str) -> str:
    """The provider a device gets when none is named."""
    provider = DEFAULT_PROVIDERS.get(device.lower())
    if provider is None:
        raise OlivepressError(
            f"device '{device}' is not one of {', '.join(DEVICES)}{did_you_mean(device, DEVICES)}"
        )
    return provider


def resolve_target(device: str | None, provider: str | None) -> tuple[str, str]:
    """(device, provider) from either or both: the provider's own device, else the device's
    default provider, else the CPU. A provider that cannot run on the named device is refused."""
    if provider is None:
        device = device or "cpu"
        return device, default_provider(device)
    canonical = canonical_provider(provider)
    if canonical is None:
        known = ", ".join(PROVIDER_DEVICES)
        raise OlivepressError(
            f"unknown execution provider '{provider}'{did_you_mean(provider, PROVIDER_DEVICES)}; "
            f"known: {known}"
        )
    provider_device = PROVIDER_DEVICES[canonical]
    if device is not None and device != provider_device and canonical not in ANY_DEVICE:
        raise OlivepressError(f"--provider {canonical} runs on {provider_device}, not on --device {device}")
    return device or provider_device, canonical


def provider_available(provider: str) -> bool:
    """Whether this onnxruntime build has the provider (a result for another one is unverified here)."""
    import onnxruntime as ort

    return (canonical_provider(provider) or provider) in ort.get_available_providers()

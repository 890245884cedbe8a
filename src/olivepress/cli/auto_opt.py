"""`olivepress auto-opt`: a model into an optimised ONNX model for a device and provider.

Decoders the ORT GenAI builder knows take the LLM path (ModelBuilder, int4 by default, and
ExtractAdapters when an adapter is given); the result is checked against PyTorch before it is
handed over.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Optimise a model into ONNX for a device and execution provider (ORT GenAI for LLMs, with switchable LoRA adapters)."

PROVIDERS = {
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
DEFAULT_PROVIDER = {"cpu": "CPUExecutionProvider", "gpu": "CUDAExecutionProvider", "npu": "QNNExecutionProvider"}


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags

    parser = commands.add_parser("auto-opt", help=HELP, description=HELP)
    parser.add_argument("-m", "--model_name_or_path", default="default",
                        help="HF folder, .gguf file, HF id in the local cache, or 'default' (embedded SmolLM2).")
    parser.add_argument("--adapter_path", help="PEFT LoRA adapter to make switchable (written as model/adapter_weights.onnx_adapter).")
    parser.add_argument("--adapter_name", default="default", help="Name the adapter is registered under (default 'default').")
    parser.add_argument("--device", choices=["cpu", "gpu", "npu"], help="Target device (default: the provider's, else cpu).")
    parser.add_argument("--provider", help="Execution provider, e.g. CPUExecutionProvider (default for the device).")
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16", "int8", "int4"], default="int4",
                        help="Weight precision (default int4).")
    parser.add_argument("--use_ort_genai", action="store_true", help="Build an ORT GenAI model (the LLM path).")
    parser.add_argument("--int4_block_size", type=int, choices=[16, 32, 64, 128, 256], help="Block size of int4 weights.")
    parser.add_argument("--int4_accuracy_level", type=int, choices=range(5), metavar="{0..4}",
                        help="MatMulNBits compute precision (4 = int8 on CPU).")
    parser.add_argument("--trust_remote_code", action="store_true", help="Allow the model's own code (off unless given).")
    parser.add_argument("-o", "--output_path", required=True, help="Output folder; the model goes into OUTPUT/model.")
    parser.add_argument("--cache_dir", default=".olivepress-cache", help="Cache of finished passes (default .olivepress-cache).")
    parser.add_argument("--skip_check", action="store_true", help="Do not compare the result with PyTorch before handing it over.")
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def resolve_target(device: str | None, provider: str | None) -> tuple[str, str]:
    from olivepress.errors import OlivepressError, did_you_mean

    if provider is not None:
        canonical = {name.lower(): name for name in PROVIDERS}.get(provider.lower()) or {
            name.lower().removesuffix("executionprovider"): name for name in PROVIDERS
        }.get(provider.lower())
        if canonical is None:
            raise OlivepressError(
                f"unknown execution provider '{provider}'{did_you_mean(provider, PROVIDERS)}; known: {', '.join(PROVIDERS)}"
            )
        provider_device = PROVIDERS[canonical]
        if device is not None and device != provider_device and canonical not in ("DmlExecutionProvider", "OpenVINOExecutionProvider", "WebGpuExecutionProvider"):
            raise OlivepressError(f"--provider {canonical} runs on {provider_device}, not on --device {device}")
        return device or provider_device, canonical
    device = device or "cpu"
    return device, DEFAULT_PROVIDER[device]


def execute(args: argparse.Namespace) -> int:
    import onnxruntime

    from olivepress.api import run
    from olivepress.errors import OlivepressError
    from olivepress.models.handles import HfModel
    from olivepress.models.resolve import resolve_model
    from olivepress.passes.onnx.model_builder import builder_architectures
    from olivepress.ui import console, setup_logging

    setup_logging(0 if args.debug else args.log_level)
    device, provider = resolve_target(args.device, args.provider)
    load_kwargs = {"trust_remote_code": True} if args.trust_remote_code else {}
    model = resolve_model(args.model_name_or_path, adapter_path=args.adapter_path, load_kwargs=load_kwargs)
    if not isinstance(model, HfModel):
        raise OlivepressError(f"{model.path} is already an ONNX model; auto-opt takes a Hugging Face / PyTorch model")
    architecture = (json.loads((model.folder / "config.json").read_text()).get("architectures") or ["?"])[0]
    if architecture not in builder_architectures():
        if args.use_ort_genai:
            raise OlivepressError(
                f"the ORT GenAI builder does not convert {architecture}; drop --use_ort_genai to take the generic "
                "ONNX path (OnnxConversion and friends), or use a decoder it knows (Llama, Mistral, Phi-3, Qwen2, Gemma, ...)"
            )
        return _generic_path(args, model, architecture, device, provider)
    if args.adapter_path:
        _check_adapter_base(model, Path(args.adapter_path))

    builder = {"type": "ModelBuilder", "precision": args.precision, "execution_provider": provider}
    if args.int4_block_size:
        builder["int4_block_size"] = args.int4_block_size
    if args.int4_accuracy_level is not None:
        builder["int4_accuracy_level"] = args.int4_accuracy_level
    from olivepress.passes.torch.head_and_embeddings import default_head_step

    # A quantized checkpoint's float lm_head and embeddings would be most of a small model's
    # bytes: on a CPU they go to 8 bits on our grid first (tied where the model ties them).
    heads = default_head_step(model, device, args.precision)
    passes = {"heads": heads} if heads else {}
    passes["builder"] = builder
    if args.adapter_path:
        passes["extract_adapters"] = {"type": "ExtractAdapters", "adapter_name": args.adapter_name}
    config = {
        "input_model": model.model_dump(exclude={"kind"}) | {"type": "HfModel", "model_path": model.path},
        "passes": passes,
        "systems": {"target": {"type": "LocalSystem", "accelerators": [{"device": device, "execution_providers": [provider]}]}},
        "target": "target",
        "output_dir": args.output_path,
        "cache_dir": args.cache_dir,
    }
    config["input_model"].pop("path")
    verifiable = provider in onnxruntime.get_available_providers()
    chain = " -> ".join(f"{spec['type']}" for spec in passes.values())
    console.print(f"auto-opt: {architecture} on the ORT GenAI path, {args.precision} for {provider}: {chain}")
    check = None
    if args.skip_check or not verifiable:
        reason = "--skip_check" if args.skip_check else f"{provider} is not available on this machine"
        console.print(f"[yellow]not verified: the result is not run or compared with PyTorch here ({reason})[/]")
    else:
        check = _parity_check(model, {args.adapter_name: Path(args.adapter_path)} if args.adapter_path else {})
    result = run(config, log_level=0 if args.debug else args.log_level, check=check)
    _print_check(result)
    return 0


def _generic_path(args: argparse.Namespace, model, architecture: str, device: str, provider: str) -> int:
    """Models the ORT GenAI builder does not know: torch.onnx export and ONNX Runtime passes."""
    from olivepress.api import run
    from olivepress.errors import OlivepressError
    from olivepress.passes.onnx.chains import describe_generic_chain, generic_chain, provider_available
    from olivepress.ui import console

    if args.adapter_path:
        console.print("[yellow]the generic ONNX path merges the adapter into the model (switchable adapters need the ORT GenAI path)[/]")
    chain = generic_chain(device, provider, args.precision)
    passes = {f"{index}_{pass_type}": {"type": pass_type, **options} for index, (pass_type, options) in enumerate(chain, start=1)}
    console.print(f"auto-opt: {architecture} on the generic ONNX path: {describe_generic_chain(device, provider, args.precision)}")
    config = {
        "input_model": {"type": "HfModel", "model_path": model.path, "adapter_path": model.adapter_path, "task": model.task,
                        "load_kwargs": model.load_kwargs},
        "passes": passes,
        "systems": {"target": {"type": "LocalSystem", "accelerators": [{"device": device, "execution_providers": [provider]}]}},
        "target": "target",
        "output_dir": args.output_path,
        "cache_dir": args.cache_dir,
    }
    check = None
    if args.skip_check or not provider_available(provider):
        reason = "--skip_check" if args.skip_check else f"{provider} is not available on this machine"
        console.print(f"[yellow]not verified: the result is not run or compared with PyTorch here ({reason})[/]")
    else:
        def check(handle) -> dict:
            from olivepress.evaluate.parity import check_onnx_parity

            report = check_onnx_parity(handle.folder, model)
            if not report.min_cosine > 0.9:
                raise OlivepressError(f"the optimised model disagrees with PyTorch (cosine {report.min_cosine:.3f}); not handing it over")
            return {**report.to_dict(), "lines": report.lines()}
    result = run(config, log_level=0 if args.debug else args.log_level, check=check)
    _print_check(result)
    return 0


def _print_check(result) -> None:
    from olivepress.ui import console

    report = result.footprint.checks.get(str(result.flows[0].output_dir))
    if report:
        console.print("Check against PyTorch:")
        for line in report["lines"]:
            console.print(f"  {line}")


def _parity_check(reference, adapters: dict[str, Path]):
    def check(handle) -> dict:
        from olivepress.evaluate.parity import check_parity

        report = check_parity(handle.folder, reference.model_copy(update={"adapter_path": None}), adapters)
        return {**report.to_dict(), "lines": report.lines()}

    return check


def _check_adapter_base(model, adapter_dir: Path) -> None:
    """An adapter trained for another base fails here, before any work, with the sizes that differ."""
    from safetensors import safe_open

    from olivepress.errors import OlivepressError

    config = json.loads((model.folder / "config.json").read_text())
    sizes = {config.get("hidden_size"), config.get("intermediate_size")}
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        return
    with safe_open(str(weights), framework="np") as tensors:
        for key in tensors.keys():  # noqa: SIM118 - safe_open has no __iter__
            if ".lora_A." in key:
                in_features = tensors.get_slice(key).get_shape()[1]
                if in_features not in sizes:
                    raise OlivepressError(
                        f"adapter {adapter_dir} was trained on another base model: {key} takes {in_features} inputs, "
                        f"but {model.path} has hidden size {config.get('hidden_size')}"
                    )
                return

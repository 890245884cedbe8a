"""The workflow `auto-opt` runs: which path a model takes, its passes, and the check before hand-over.

Decoders the ORT GenAI builder knows take the LLM path (ModelBuilder, int4 by default, and
ExtractAdapters when an adapter is given); other models take the generic ONNX path (the chain
`passes/onnx/chains.py` picks for the target). Either result is compared with PyTorch before
it is handed over, when the target's provider can run here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel, ModelHandle

Check = Callable[[ModelHandle], dict[str, Any]]


@dataclass
class AutoOptPlan:
    config: dict[str, Any]  # the flat workflow config api.run takes
    messages: list[str] = field(default_factory=list)  # for the person running it, in order (rich markup)
    check: Check | None = None  # None: the result is not compared with PyTorch here


def plan_auto_opt(
    model_name_or_path: str | Path = "default",
    *,
    output_path: str | Path,
    adapter_path: str | Path | None = None,
    adapter_name: str = "default",
    adapter_precision: str = "fp32",
    adapter_block_size: int | None = None,
    device: str | None = None,
    provider: str | None = None,
    precision: str = "int4",
    use_ort_genai: bool = False,
    int4_block_size: int | None = None,
    int4_accuracy_level: int | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | Path,
    skip_check: bool = False,
) -> AutoOptPlan:
    """The workflow that optimises the model (with the PEFT adapter at `adapter_path`, if any)
    for the target: `device`, `provider` or both (see targets.resolve_target)."""
    from olivepress.models.resolve import resolve_model
    from olivepress.passes.onnx.model_builder import builder_architectures
    from olivepress.targets import provider_available, resolve_target

    device, provider = resolve_target(device, provider)
    load_kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    model = resolve_model(
        str(model_name_or_path),
        adapter_path=None if adapter_path is None else str(adapter_path),
        load_kwargs=load_kwargs,
    )
    if not isinstance(model, HfModel):
        raise OlivepressError(
            f"{model.path} is already an ONNX model; auto-opt takes a Hugging Face / PyTorch model"
        )
    architecture = (json.loads((model.folder / "config.json").read_text()).get("architectures") or ["?"])[0]
    if architecture not in builder_architectures():
        if use_ort_genai:
            raise OlivepressError(
                f"the ORT GenAI builder does not convert {architecture}; drop --use_ort_genai to take "
                "the generic ONNX path (OnnxConversion and friends), or use a decoder it knows "
                "(Llama, Mistral, Phi-3, Qwen2, Gemma, ...)"
            )
        return _generic_plan(
            model,
            architecture,
            device,
            provider,
            precision,
            output_path,
            cache_dir,
            skip_check,
            with_adapter=bool(adapter_path),
        )
    if adapter_path:
        _check_adapter_base(model, Path(adapter_path))

    builder: dict[str, Any] = {"type": "ModelBuilder", "precision": precision, "execution_provider": provider}
    if int4_block_size:
        builder["int4_block_size"] = int4_block_size
    if int4_accuracy_level is not None:
        builder["int4_accuracy_level"] = int4_accuracy_level
    from olivepress.passes.torch.head_and_embeddings import default_head_step

    # A quantized checkpoint's float lm_head and embeddings would be most of a small model's
    # bytes: on a CPU they go to 8 bits on our grid first (tied where the model ties them).
    heads = default_head_step(model, device, precision)
    passes: dict[str, Any] = {"heads": heads} if heads else {}
    passes["builder"] = builder
    if adapter_path:
        passes["extract_adapters"] = {
            "type": "ExtractAdapters",
            "adapter_name": adapter_name,
            "adapter_precision": adapter_precision,
        }
        if adapter_block_size:
            passes["extract_adapters"]["adapter_block_size"] = adapter_block_size
    input_model = model.model_dump(exclude={"kind", "path"}) | {"type": "HfModel", "model_path": model.path}
    config = _config(input_model, passes, device, provider, output_path, cache_dir)
    chain = " -> ".join(f"{spec['type']}" for spec in passes.values())
    line = f"auto-opt: {architecture} on the ORT GenAI path, {precision} for {provider}: {chain}"
    plan = AutoOptPlan(config, [line])
    reason = _unverified(provider, skip_check, provider_available(provider))
    if reason:
        plan.messages.append(reason)
    else:
        adapters = {adapter_name: Path(adapter_path)} if adapter_path else {}
        plan.check = genai_parity_check(model, adapters)
    return plan


def _generic_plan(
    model: HfModel,
    architecture: str,
    device: str,
    provider: str,
    precision: str,
    output_path: str | Path,
    cache_dir: str | Path,
    skip_check: bool,
    *,
    with_adapter: bool,
) -> AutoOptPlan:
    """Models the ORT GenAI builder does not know: torch.onnx export and ONNX Runtime passes."""
    from olivepress.passes.onnx.chains import describe_generic_chain, generic_chain, provider_available

    plan = AutoOptPlan(config={})
    if with_adapter:
        plan.messages.append(
            "[yellow]the generic ONNX path merges the adapter into the model "
            "(switchable adapters need the ORT GenAI path)[/]"
        )
    chain = generic_chain(device, provider, precision)
    passes = {
        f"{index}_{pass_type}": {"type": pass_type, **options}
        for index, (pass_type, options) in enumerate(chain, start=1)
    }
    description = describe_generic_chain(device, provider, precision)
    plan.messages.append(f"auto-opt: {architecture} on the generic ONNX path: {description}")
    input_model = {
        "type": "HfModel",
        "model_path": model.path,
        "adapter_path": model.adapter_path,
        "task": model.task,
        "load_kwargs": model.load_kwargs,
    }
    plan.config = _config(input_model, passes, device, provider, output_path, cache_dir)
    reason = _unverified(provider, skip_check, provider_available(provider))
    if reason:
        plan.messages.append(reason)
    else:
        plan.check = onnx_parity_check(model)
    return plan


def _config(
    input_model: dict[str, Any],
    passes: dict[str, Any],
    device: str,
    provider: str,
    output_path: str | Path,
    cache_dir: str | Path,
) -> dict[str, Any]:
    accelerator = {"device": device, "execution_providers": [provider]}
    return {
        "input_model": input_model,
        "passes": passes,
        "systems": {"target": {"type": "LocalSystem", "accelerators": [accelerator]}},
        "target": "target",
        "output_dir": str(output_path),
        "cache_dir": str(cache_dir),
    }


def _unverified(provider: str, skip_check: bool, available: bool) -> str | None:
    if not skip_check and available:
        return None
    reason = "--skip_check" if skip_check else f"{provider} is not available on this machine"
    return f"[yellow]not verified: the result is not run or compared with PyTorch here ({reason})[/]"


def genai_parity_check(reference: HfModel, adapters: dict[str, Path]) -> Check:
    """The check of an ORT GenAI result: logits and samples against PyTorch, with each adapter."""

    def check(handle: ModelHandle) -> dict[str, Any]:
        from olivepress.evaluate.parity import check_parity

        report = check_parity(handle.folder, reference.model_copy(update={"adapter_path": None}), adapters)
        return {**report.to_dict(), "lines": report.lines()}

    return check


def onnx_parity_check(reference: HfModel) -> Check:
    """The check of a generic-path result: its first output against PyTorch's, by cosine."""

    def check(handle: ModelHandle) -> dict[str, Any]:
        from olivepress.evaluate.parity import check_onnx_parity

        report = check_onnx_parity(handle.folder, reference)
        if not report.min_cosine > 0.9:
            raise OlivepressError(
                f"the optimised model disagrees with PyTorch (cosine {report.min_cosine:.3f}); "
                "not handing it over"
            )
        return {**report.to_dict(), "lines": report.lines()}

    return check


def _check_adapter_base(model: HfModel, adapter_dir: Path) -> None:
    """An adapter trained for another base fails here, before any work, with the sizes that differ."""
    from safetensors import safe_open

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
                        f"adapter {adapter_dir} was trained on another base model: {key} takes {in_features} "
                        f"inputs, but {model.path} has hidden size {config.get('hidden_size')}"
                    )
                return

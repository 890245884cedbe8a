"""The engine: runs each pass flow in order through the cache and writes the output."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olivepress.data.config import DataConfig
from olivepress.engine.cache import PassCache, pass_key
from olivepress.engine.footprint import Footprint, FootprintNode
from olivepress.engine.output import prepare_output_dir, write_output
from olivepress.errors import OlivepressError
from olivepress.models.fingerprint import file_digest, folder_fingerprint, text_fingerprint
from olivepress.models.handles import HfModel, ModelHandle
from olivepress.models.resolve import resolve_model
from olivepress.passes.base import PassContext
from olivepress.workflow.load import PlannedPass, Workflow

log = logging.getLogger("olivepress")


@dataclass
class FlowResult:
    model: ModelHandle
    output_dir: Path
    nodes: list[FootprintNode]


@dataclass
class WorkflowResult:
    flows: list[FlowResult]
    footprint: Footprint

    @property
    def model(self) -> ModelHandle:
        """The output model of the (first) flow."""
        return self.flows[0].model


def input_handle(workflow: Workflow) -> ModelHandle:
    spec = workflow.config.input_model
    handle = resolve_model(spec.model_path, adapter_path=spec.adapter_path, task=spec.task, load_kwargs=spec.load_kwargs)
    if spec.is_onnx and handle.kind != "onnx":
        raise OlivepressError(f"input_model has type {spec.type} but {handle.path} is not an ONNX model; use type HfModel")
    if not spec.is_onnx and handle.kind == "onnx":
        raise OlivepressError(f"input_model has type {spec.type} but {handle.path} is an ONNX model; use type OnnxModel")
    return handle


def model_fingerprint(handle: ModelHandle) -> str:
    parts: list[object] = [handle.kind, folder_fingerprint(handle.folder)]
    if isinstance(handle, HfModel):
        parts += [folder_fingerprint(Path(handle.adapter_path)) if handle.adapter_path else None, handle.load_kwargs]
    return text_fingerprint(*parts)


ModelCheck = Callable[[ModelHandle], dict[str, Any]]


def run_workflow(workflow: Workflow, *, clean_cache: bool = False, check: ModelCheck | None = None) -> WorkflowResult:
    """Run every pass flow through the cache, then write each flow's output.

    `check`, when given, runs on each flow's final model before anything is written: what it
    returns goes into the footprint, and an error it raises means no output at all.
    """
    config = workflow.config
    started = time.perf_counter()
    output_root = Path(config.output_dir).expanduser().resolve()
    outputs = _flow_output_dirs(workflow, output_root)
    for folder in outputs:
        prepare_output_dir(folder)
    cache = PassCache(Path(config.cache_dir).expanduser().resolve())
    if clean_cache or config.clean_cache:
        log.info("Emptying the cache at %s", cache.root)
        cache.clean()
    ctx = PassContext(
        device=workflow.device,
        execution_provider=workflow.execution_provider,
        data_configs={data.name: data for data in config.data_configs},
        scratch_dir=cache.scratch,
        log=log,
    )
    source = input_handle(workflow)
    log.info("Input model: %s", source.path)
    fingerprint = model_fingerprint(source)
    footprint = Footprint(
        input_model={"model_id": fingerprint[:16], **source.model_dump()},
        device=workflow.device,
        execution_provider=workflow.execution_provider,
    )
    flow_results = []
    for flow, output_dir in zip(workflow.flows, outputs, strict=True):
        model, nodes = _run_flow(flow, source, fingerprint, cache, ctx)
        footprint.nodes.extend(node for node in nodes if node.model_id not in {n.model_id for n in footprint.nodes})
        flow_results.append(FlowResult(model=model, output_dir=output_dir, nodes=nodes))
    if check is not None:
        for result in flow_results:
            footprint.checks[str(result.output_dir)] = check(result.model)
    footprint.total_duration_s = time.perf_counter() - started
    for result in flow_results:
        footprint.outputs.append({"output_dir": str(result.output_dir), "model_id": result.nodes[-1].model_id if result.nodes else None})
    for result in flow_results:
        result.model = write_output(result.output_dir, result.model, footprint.to_dict())
    return WorkflowResult(flows=flow_results, footprint=footprint)


def _flow_output_dirs(workflow: Workflow, output_root: Path) -> list[Path]:
    if len(workflow.flows) == 1:
        return [output_root]
    return [output_root / "-".join(p.name for p in flow) for flow in workflow.flows]


def _run_flow(
    flow: list[PlannedPass], model: ModelHandle, fingerprint: str, cache: PassCache, ctx: PassContext
) -> tuple[ModelHandle, list[FootprintNode]]:
    nodes: list[FootprintNode] = []
    parent = fingerprint[:16]
    for index, planned in enumerate(flow, start=1):
        module = planned.spec.module
        if model.kind not in module.ACCEPTS:
            kinds = " or ".join(module.ACCEPTS)
            raise OlivepressError(
                f"pass '{planned.name}' ({planned.spec.name}) takes a {kinds} model but gets {model.kind} "
                f"({model.path}); reorder the passes"
            )
        options = planned.config.model_dump(mode="json")
        key = pass_key(fingerprint, planned.spec.name, module.VERSION, {"options": options, **_key_context(options, ctx)})
        entry = cache.lookup(key)
        label = f"[{index}/{len(flow)}] {planned.name} ({planned.spec.name})"
        if entry is not None:
            log.info("%s: cached", label)
        else:
            log.info("%s: running", label)
            entry = cache.run_into(key, lambda out, m=model, p=planned: _run_pass(p, m, out, ctx))
            log.info("%s: done in %.1f s", label, entry.duration_s)
        nodes.append(
            FootprintNode(
                model_id=key[:16],
                parent_model_id=parent,
                pass_name=planned.name,
                pass_type=planned.spec.name,
                config=options,
                from_cache=entry.from_cache,
                duration_s=round(entry.duration_s, 3),
                model=entry.handle.model_dump(),
            )
        )
        model, fingerprint, parent = entry.handle, key, key[:16]
    return model, nodes


def _key_context(options: dict[str, Any], ctx: PassContext) -> dict[str, Any]:
    """What else a pass's output depends on: the target (passes may read it from the context),
    and the content of every data config its options name, down to the data files' bytes."""
    used = sorted(name for name in ctx.data_configs if _mentions(options, name))
    data = {name: [ctx.data_configs[name].model_dump(mode="json"), _data_files_fingerprint(ctx.data_configs[name])] for name in used}
    return {"device": ctx.device, "execution_provider": ctx.execution_provider, "data_configs": data}


def _mentions(value: Any, name: str) -> bool:
    if isinstance(value, str):
        return value == name
    if isinstance(value, dict):
        return any(_mentions(item, name) for item in value.values())
    if isinstance(value, list):
        return any(_mentions(item, name) for item in value)
    return False


def _data_files_fingerprint(data: DataConfig) -> list[str]:
    files = data.load_dataset_config.data_files
    paths = [files] if isinstance(files, str) else list(files) if isinstance(files, list) else [
        p for value in files.values() for p in ([value] if isinstance(value, str) else value)
    ]
    return [file_digest(Path(p)) if Path(p).is_file() else f"missing:{p}" for p in paths]


def _run_pass(planned: PlannedPass, model: ModelHandle, out_dir: Path, ctx: PassContext) -> ModelHandle:
    try:
        return planned.spec.module.run(model, planned.config, out_dir, ctx)
    except OlivepressError:
        raise
    except Exception as exc:
        raise OlivepressError(f"pass '{planned.name}' ({planned.spec.name}) failed: {type(exc).__name__}: {exc}") from exc

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
    evaluation: dict[str, Any] | None = None  # with an evaluator: candidates, goals, the choice


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
    baseline = {}
    if workflow.evaluator is not None and config.evaluate_input_model:
        log.info("Evaluating the input model")
        baseline = _evaluate(source, workflow, ctx)
        footprint.input_metrics = {name: value.to_dict() for name, value in baseline.items()}
    flow_results = []
    for flow, output_dir in zip(workflow.flows, outputs, strict=True):
        if workflow.evaluator is None:
            model, nodes = _run_flow(flow, source, fingerprint, cache, ctx)
            evaluation, produced = None, nodes
        else:
            # every candidate's passes go into the footprint; the chosen one's make the output
            model, nodes, evaluation, produced = _evaluate_flow(flow, workflow, source, fingerprint, cache, ctx, baseline)
            evaluation["output_dir"] = str(output_dir)
            footprint.evaluations.append(evaluation)
        for node in produced:
            if node.model_id not in {n.model_id for n in footprint.nodes}:
                footprint.nodes.append(node)
        flow_results.append(FlowResult(model=model, output_dir=output_dir, nodes=nodes, evaluation=evaluation))
    if check is not None:
        for result in flow_results:
            footprint.checks[str(result.output_dir)] = check(result.model)
    footprint.total_duration_s = time.perf_counter() - started
    for result in flow_results:
        footprint.outputs.append({"output_dir": str(result.output_dir), "model_id": result.nodes[-1].model_id if result.nodes else None})
    from olivepress.engine.report import write_report

    for result in flow_results:
        result.model = write_output(
            result.output_dir, result.model, footprint.to_dict(),
            extras=lambda folder, data, out=result.output_dir: write_report(folder, data, out),
        )
    if config.packaging_config:
        from olivepress.engine.packaging import package_outputs

        package_outputs([result.output_dir for result in flow_results], config.packaging_config)
    return WorkflowResult(flows=flow_results, footprint=footprint)


def _evaluate(model: ModelHandle, workflow: Workflow, ctx: PassContext) -> dict[str, Any]:
    from olivepress.evaluate.evaluator import evaluate_model

    assert workflow.evaluator is not None
    return evaluate_model(model, workflow.evaluator, data_configs=ctx.data_configs, execution_provider=ctx.execution_provider)


def _evaluate_flow(
    flow: list[PlannedPass], workflow: Workflow, source: ModelHandle, fingerprint: str, cache: PassCache,
    ctx: PassContext, baseline: dict[str, Any],
) -> tuple[ModelHandle, list[FootprintNode], dict[str, Any], list[FootprintNode]]:
    """Run and evaluate the flow's candidates (one without a search); the chosen one's model and
    nodes, the evaluation record for the footprint, and every candidate's nodes."""
    from olivepress.engine import search as searching

    assert workflow.evaluator is not None
    goals = searching.goal_specs(workflow.evaluator)

    def evaluate_point(point: dict[str, Any]) -> searching.Candidate:
        model, nodes = _run_flow(searching.flow_at(flow, point), source, fingerprint, cache, ctx)
        metrics = _evaluate(model, workflow, ctx)
        if nodes:
            nodes[-1].metrics = {name: value.to_dict() for name, value in metrics.items()}
        met = searching.check_goals(metrics, goals, baseline)
        log.info("  %s", ", ".join(f"{name} {value.value:.4g}{value.unit}" for name, value in metrics.items()))
        return searching.Candidate(index=1, point=point, model=model, nodes=nodes, metrics=metrics, goals=met)

    if workflow.search is not None:
        candidates = searching.search(flow, workflow.search, workflow.objectives, goals, baseline, evaluate_point)
    else:
        candidates = [evaluate_point({})]
    chosen = searching.choose(candidates, workflow.objectives)
    goal_text = searching.describe_goals(goals, baseline)
    reason = searching.explain_choice(chosen, candidates, workflow.objectives, goal_text)
    if not chosen.meets_goals:
        log.warning("no candidate meets every goal; keeping the best by the objectives")
    evaluation = {
        "flow": [p.name for p in flow],
        "search": workflow.search.model_dump() if workflow.search is not None else None,
        "dimensions": searching.dimensions(flow),
        "objectives": [{"metric": o.metric, "higher_is_better": o.higher_is_better} for o in workflow.objectives],
        "goals": goal_text,
        "candidates": [c.to_dict() for c in candidates],
        "chosen": chosen.index,
        "reason": reason,
    }
    all_nodes = [node for c in candidates for node in c.nodes]
    return chosen.model, chosen.nodes, evaluation, all_nodes


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
    if files is None:  # a hub data set (wikitext): read from the shipped text, part of the package
        return []
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

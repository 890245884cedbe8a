"""The engine: runs each pass flow in order through the cache and writes the output."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olivepress.engine.cache import PassCache
from olivepress.engine.footprint import Footprint, FootprintNode
from olivepress.engine.hosts import CandidateJob, CandidateOutcome, Host, open_host
from olivepress.engine.output import prepare_output_dir, write_output
from olivepress.errors import OlivepressError
from olivepress.models.fingerprint import folder_fingerprint, text_fingerprint
from olivepress.models.handles import HfModel, ModelHandle
from olivepress.models.resolve import resolve_model
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
    handle = resolve_model(
        spec.model_path, adapter_path=spec.adapter_path, task=spec.task, load_kwargs=spec.load_kwargs
    )
    if spec.is_onnx and handle.kind != "onnx":
        raise OlivepressError(
            f"input_model has type {spec.type} but {handle.path} is not an ONNX model; use type HfModel"
        )
    if not spec.is_onnx and handle.kind == "onnx":
        raise OlivepressError(
            f"input_model has type {spec.type} but {handle.path} is an ONNX model; use type OnnxModel"
        )
    return handle


def model_fingerprint(handle: ModelHandle) -> str:
    parts: list[object] = [handle.kind, folder_fingerprint(handle.folder)]
    if isinstance(handle, HfModel):
        parts += [
            folder_fingerprint(Path(handle.adapter_path)) if handle.adapter_path else None,
            handle.load_kwargs,
        ]
    return text_fingerprint(*parts)


ModelCheck = Callable[[ModelHandle], dict[str, Any]]


def run_workflow(
    workflow: Workflow, *, clean_cache: bool = False, check: ModelCheck | None = None
) -> WorkflowResult:
    """Run every pass flow through the cache, then write each flow's output.

    `check`, when given, runs on each flow's final model before anything is written: what it
    returns goes into the footprint, and an error it raises means no output at all.
    """
    from olivepress.workflow.preflight import check_data_reachable

    config = workflow.config
    started = time.perf_counter()
    check_data_reachable(workflow)  # before any pass: data it cannot have stops the run now
    output_root = Path(config.output_dir).expanduser().resolve()
    outputs = _flow_output_dirs(workflow, output_root)
    for folder in outputs:
        prepare_output_dir(folder)
    cache = PassCache(Path(config.cache_dir).expanduser().resolve())
    if clean_cache or config.clean_cache:
        log.info("Emptying the cache at %s", cache.root)
        cache.clean()
    source = input_handle(workflow)
    log.info("Input model: %s", source.path)
    fingerprint = model_fingerprint(source)
    footprint = Footprint(
        input_model={"model_id": fingerprint[:16], **source.model_dump()},
        device=workflow.device,
        execution_provider=workflow.execution_provider,
    )
    host = open_host(workflow.host, log_level=log.getEffectiveLevel())
    try:
        footprint.host = host.description
        jobs = _JobMaker(workflow, source, fingerprint, cache.root)
        flow_results = _run_flows(workflow, host, jobs, outputs, footprint)
    finally:
        host.close()
    if check is not None:
        for result in flow_results:
            footprint.checks[str(result.output_dir)] = check(result.model)
    footprint.total_duration_s = time.perf_counter() - started
    for result in flow_results:
        footprint.outputs.append(
            {
                "output_dir": str(result.output_dir),
                "model_id": result.nodes[-1].model_id if result.nodes else None,
            }
        )
    from olivepress.engine.report import write_report

    for result in flow_results:
        result.model = write_output(
            result.output_dir,
            result.model,
            footprint.to_dict(),
            extras=lambda folder, data, out=result.output_dir: write_report(folder, data, out),
        )
    if config.packaging_config:
        from olivepress.engine.packaging import package_outputs

        package_outputs([result.output_dir for result in flow_results], config.packaging_config)
    return WorkflowResult(flows=flow_results, footprint=footprint)


@dataclass(frozen=True)
class _JobMaker:
    """Builds each candidate's job from the workflow's fixed parts."""

    workflow: Workflow
    source: ModelHandle
    fingerprint: str
    cache_dir: Path

    def __call__(self, flow: list[PlannedPass], *, evaluate: bool = True) -> CandidateJob:
        return CandidateJob(
            flow=flow,
            source=self.source,
            fingerprint=self.fingerprint,
            cache_dir=self.cache_dir,
            device=self.workflow.device,
            execution_provider=self.workflow.execution_provider,
            data_configs={data.name: data for data in self.workflow.config.data_configs},
            evaluator=self.workflow.evaluator if evaluate else None,
        )


def _run_flows(
    workflow: Workflow, host: Host, jobs: _JobMaker, outputs: list[Path], footprint: Footprint
) -> list[FlowResult]:
    baseline = {}
    if workflow.evaluator is not None and workflow.config.evaluate_input_model:
        log.info("Evaluating the input model")
        baseline = _only(host.run([jobs([])]), "the input model's evaluation").metrics
        footprint.input_metrics = {name: value.to_dict() for name, value in baseline.items()}
    flow_results = []
    for flow, output_dir in zip(workflow.flows, outputs, strict=True):
        if workflow.evaluator is None:
            outcome = _only(host.run([jobs(flow, evaluate=False)]), "the flow")
            model, nodes, evaluation, produced = outcome.model, outcome.nodes, None, outcome.nodes
        else:
            # every candidate's passes go into the footprint; the chosen one's make the output
            model, nodes, evaluation, produced = _evaluate_flow(flow, workflow, host, jobs, baseline)
            evaluation["output_dir"] = str(output_dir)
            footprint.evaluations.append(evaluation)
        for node in produced:
            if node.model_id not in {n.model_id for n in footprint.nodes}:
                footprint.nodes.append(node)
        flow_results.append(
            FlowResult(model=model, output_dir=output_dir, nodes=nodes, evaluation=evaluation)
        )
    return flow_results


def _only(outcomes: list[CandidateOutcome], what: str) -> CandidateOutcome:
    (outcome,) = outcomes
    if outcome.error is not None:
        raise OlivepressError(f"{what} failed on the host: {outcome.error}")
    return outcome


def _evaluate_flow(
    flow: list[PlannedPass],
    workflow: Workflow,
    host: Host,
    jobs: _JobMaker,
    baseline: dict[str, Any],
) -> tuple[ModelHandle, list[FootprintNode], dict[str, Any], list[FootprintNode]]:
    """Run and evaluate the flow's candidates (one without a search); the chosen one's model and
    nodes, the evaluation record for the footprint, and every candidate's nodes."""
    from olivepress.engine import search as searching

    assert workflow.evaluator is not None
    goals = searching.goal_specs(workflow.evaluator)

    def evaluate_points(points: list[dict[str, Any]]) -> list[searching.Candidate]:
        outcomes = host.run([jobs(searching.flow_at(flow, point)) for point in points])
        candidates = []
        for point, outcome in zip(points, outcomes, strict=True):
            met = {} if outcome.error else searching.check_goals(outcome.metrics, goals, baseline)
            if outcome.error is None:
                shown = (f"{name} {value.value:.4g}{value.unit}" for name, value in outcome.metrics.items())
                log.info("  %s", ", ".join(shown))
            candidates.append(
                searching.Candidate(
                    index=1,
                    point=point,
                    model=outcome.model,
                    nodes=outcome.nodes,
                    metrics=outcome.metrics,
                    goals=met,
                    error=outcome.error,
                    worker=outcome.worker,
                )
            )
        return candidates

    if workflow.search is not None:
        candidates = searching.search(
            flow, workflow.search, workflow.objectives, goals, baseline, evaluate_points, slots=host.slots
        )
    else:
        candidates = evaluate_points([{}])
    chosen = searching.choose(candidates, workflow.objectives)
    goal_text = searching.describe_goals(goals, baseline)
    reason = searching.explain_choice(chosen, candidates, workflow.objectives, goal_text)
    if not chosen.meets_goals:
        log.warning("no candidate meets every goal; keeping the best by the objectives")
    evaluation = {
        "flow": [p.name for p in flow],
        "search": workflow.search.model_dump() if workflow.search is not None else None,
        "dimensions": searching.dimensions(flow),
        "objectives": [
            {"metric": o.metric, "higher_is_better": o.higher_is_better} for o in workflow.objectives
        ],
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

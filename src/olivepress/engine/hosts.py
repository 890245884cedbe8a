"""Where a search's candidates are built and measured: here, one after another, or as Ray tasks
on a cluster (engine/ray_host.py). A candidate travels as a CandidateJob, plain data a worker
can unpickle, and comes back as a CandidateOutcome."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from olivepress.data.config import DataConfig
from olivepress.engine.cache import PassCache
from olivepress.engine.flows import run_flow
from olivepress.engine.footprint import FootprintNode
from olivepress.evaluate.config import EvaluatorConfig
from olivepress.evaluate.evaluator import MetricValue
from olivepress.models.handles import ModelHandle
from olivepress.passes.base import PassContext
from olivepress.workflow.config import SystemConfig
from olivepress.workflow.load import PlannedPass

log = logging.getLogger("olivepress")


@dataclass(frozen=True)
class CandidateJob:
    """One candidate: its flow (searched options set), the input model and where to cache."""

    flow: list[PlannedPass]
    source: ModelHandle
    fingerprint: str
    cache_dir: Path
    device: str
    execution_provider: str
    data_configs: dict[str, DataConfig]
    evaluator: EvaluatorConfig | None


@dataclass
class CandidateOutcome:
    """What a candidate produced; `error` says why it has no model (after its retry on Ray)."""

    model: ModelHandle | None
    nodes: list[FootprintNode]
    metrics: dict[str, MetricValue]
    error: str | None = None
    worker: dict[str, Any] = field(default_factory=dict)  # on Ray: the node and pid that built it


def run_candidate(job: CandidateJob) -> CandidateOutcome:
    """Run the candidate's passes through the cache, then measure its model."""
    from olivepress.evaluate.evaluator import evaluate_model

    cache = PassCache(job.cache_dir)
    ctx = PassContext(
        device=job.device,
        execution_provider=job.execution_provider,
        data_configs=job.data_configs,
        scratch_dir=cache.scratch,
        log=log,
    )
    model, nodes = run_flow(job.flow, job.source, job.fingerprint, cache, ctx)
    metrics: dict[str, MetricValue] = {}
    if job.evaluator is not None:
        metrics = evaluate_model(
            model, job.evaluator, data_configs=job.data_configs, execution_provider=job.execution_provider
        )
        if nodes:
            nodes[-1].metrics = {name: value.to_dict() for name, value in metrics.items()}
    return CandidateOutcome(model=model, nodes=nodes, metrics=metrics)


class Host(Protocol):
    slots: int  # candidates that can run at once: a sequential sampler's batch size
    description: dict[str, Any]  # for the footprint

    def run(self, jobs: list[CandidateJob]) -> list[CandidateOutcome]:
        """Every job's outcome, in the order of `jobs`."""
        ...

    def close(self) -> None: ...


class LocalHost:
    """This machine, one candidate after another; a failing pass stops the run."""

    slots = 1

    @property
    def description(self) -> dict[str, Any]:
        return {"type": "LocalSystem"}

    def run(self, jobs: list[CandidateJob]) -> list[CandidateOutcome]:
        return [run_candidate(job) for job in jobs]

    def close(self) -> None:
        pass


def open_host(system: SystemConfig | None, *, log_level: int = logging.INFO) -> Host:
    """The host the workflow's `host` names: a Ray cluster for a Ray system, else this machine."""
    if system is None or system.type != "Ray":
        return LocalHost()
    from olivepress.engine.ray_host import RayHost

    return RayHost(system, log_level=log_level)

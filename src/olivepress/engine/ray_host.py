"""A Ray cluster as the host: each candidate is one Ray task that reserves the system's
resources_per_trial, so Ray runs as many at once as the cluster has room for.

Ray is the scheduler: tasks are submitted together and collected with ray.wait as they end.
A task whose worker dies (or that raises something unexpected) is retried once by Ray
(max_retries / retry_exceptions); an OlivepressError is the same on every try, so it is
returned, not raised. Either way a candidate that still fails comes back with its error and
the search goes on. Paths in a job (the input model, data files, cache_dir) must mean the same
on every node: a shared folder mounted at the same place.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

from olivepress.engine.hosts import CandidateJob, CandidateOutcome, run_candidate
from olivepress.errors import OlivepressError
from olivepress.workflow.config import ResourcesPerTrial, SystemConfig

log = logging.getLogger("olivepress")

TASK_NAME = "olivepress-candidate"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise OlivepressError(
            "the workflow's host is a Ray system but ray is not installed; pip install 'olivepress[ray]'"
        ) from None
    return ray


def build_and_measure(job: CandidateJob, log_level: int) -> CandidateOutcome:
    """The Ray task: one candidate, on whichever node Ray chose."""
    import ray

    from olivepress.ui import setup_logging

    started = time.perf_counter()
    setup_logging()
    logging.getLogger("olivepress").setLevel(log_level)
    worker: dict[str, Any] = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "pid": os.getpid(),
    }
    if not job.source.folder.exists():
        error = (
            f"the input model {job.source.path} is not on node {worker['node_ip']}; put it (and the data "
            "and cache_dir) on a folder every node mounts at the same path"
        )
        outcome = CandidateOutcome(None, [], {}, error=error)
    else:
        try:
            outcome = run_candidate(job)
        except OlivepressError as exc:  # the same on every try: report it rather than retry
            outcome = CandidateOutcome(None, [], {}, error=str(exc))
    # the time inside the task: what the driver waited beyond it is Ray's scheduling and transfer
    outcome.worker = {**worker, "task_s": round(time.perf_counter() - started, 4)}
    return outcome


class RayHost:
    """Candidates as Ray tasks on the cluster at the system's address."""

    def __init__(self, system: SystemConfig, *, log_level: int = logging.INFO):
        ray = import_ray()
        self._ray = ray
        self._connected_here = not ray.is_initialized()
        if self._connected_here:
            where = system.address or "RAY_ADDRESS, a running local cluster or a new one"
            log.info("Connecting to Ray (%s)", where)
            try:
                ray.init(address=system.address, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise OlivepressError(
                    f"cannot reach the Ray cluster at {system.address or 'auto'}: {_first_line(exc)}; "
                    "start one with `ray start --head` or give its address "
                    "(ray://HOST:10001, HOST:6379, auto, local)"
                ) from None
        self.resources = system.resources_per_trial or ResourcesPerTrial()
        self._log_level = log_level
        self._task = ray.remote(build_and_measure).options(
            name=TASK_NAME,
            num_cpus=self.resources.num_cpus,
            num_gpus=self.resources.num_gpus,
            max_retries=1,
            retry_exceptions=True,
        )
        try:
            self.slots = self._slots()
        except OlivepressError:
            self.close()
            raise
        self.description = {
            "type": "Ray",
            "address": system.address,
            "slots": self.slots,
            **self.resources.model_dump(),
        }
        log.info(
            "Ray cluster: room for %d candidate(s) at once (%g CPU, %g GPU each)",
            self.slots,
            self.resources.num_cpus,
            self.resources.num_gpus,
        )

    def _slots(self) -> int:
        total = self._ray.cluster_resources()
        fits = [math.floor(total.get("CPU", 0) / self.resources.num_cpus + 1e-9)]
        if self.resources.num_gpus:
            fits.append(math.floor(total.get("GPU", 0) / self.resources.num_gpus + 1e-9))
        if min(fits) < 1:
            raise OlivepressError(
                f"the Ray cluster has no room for one candidate ({self.resources.num_cpus:g} CPU, "
                f"{self.resources.num_gpus:g} GPU; it has {total.get('CPU', 0):g} CPU, "
                f"{total.get('GPU', 0):g} GPU); lower resources_per_trial or add nodes"
            )
        return min(fits)

    def run(self, jobs: list[CandidateJob]) -> list[CandidateOutcome]:
        """Submit every job at once (Ray queues what does not fit) and collect them as they end."""
        ray = self._ray
        pending = {self._task.remote(job, self._log_level): index for index, job in enumerate(jobs)}
        outcomes: list[CandidateOutcome | None] = [None] * len(jobs)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    outcomes[index] = ray.get(ref)
                except ray.exceptions.RayError as exc:  # retried once already, by Ray
                    outcomes[index] = CandidateOutcome(None, [], {}, error=_task_error(exc))
                if outcomes[index].error:
                    log.warning("a candidate failed on Ray: %s", outcomes[index].error)
        return [outcome for outcome in outcomes if outcome is not None]

    def close(self) -> None:
        if self._connected_here:
            self._ray.shutdown()


def _task_error(exc: Exception) -> str:
    cause = getattr(exc, "cause", None)
    if cause is not None:  # the task raised: name what it raised
        return f"{type(cause).__name__}: {_first_line(cause)} (failed twice on Ray)"
    return f"{type(exc).__name__}: {_first_line(exc)} (lost twice on Ray)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

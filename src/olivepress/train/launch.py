"""Start the processes of a multi-process training run: torchrun's launcher, run in-process.

`olivepress finetune --num_processes N` builds the arguments the `torchrun` command would get
(`--standalone --nproc_per_node N`, or `--nnodes/--node_rank/--master_addr/--master_port`
for several machines, `--max_restarts 0`, `-m <worker module> JOB`) and runs
`torch.distributed.run.run` on them: torchrun's own entry point (its elastic agent starts the
processes, sets RANK/WORLD_SIZE/MASTER_ADDR, and stops them all when one dies). Calling it
in-process rather than as a `python -m torch.distributed.run` subprocess keeps all of that
while the per-process failures come back as data (`ChildFailedError.failures`): the first
failing process's message becomes one line, instead of torchrun's multi-page report.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from olivepress.errors import OlivepressError
from olivepress.train.world import PeerLost

log = logging.getLogger("olivepress")


@dataclass(frozen=True)
class Processes:
    """How many processes train, on how many machines, and where they meet."""

    per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int = 29500

    @property
    def world_size(self) -> int:
        return self.per_node * self.nnodes

    @property
    def first_rank(self) -> int:
        """The global rank of this machine's first process."""
        return self.node_rank * self.per_node

    def torchrun_args(self) -> list[str]:
        """The rendezvous arguments of `torchrun` for this layout."""
        if self.nnodes == 1:
            # A free port on loopback, chosen by torchrun: two runs on one machine never collide.
            return ["--standalone", f"--nproc_per_node={self.per_node}"]
        return [
            f"--nnodes={self.nnodes}",
            f"--node_rank={self.node_rank}",
            f"--master_addr={self.master_addr}",
            f"--master_port={self.master_port}",
            f"--nproc_per_node={self.per_node}",
        ]


def threads_per_process(per_node: int) -> int:
    """The cores free right now, split between this machine's processes (at least one each)."""
    from olivepress.cpu import free_cores

    return max(1, free_cores() // per_node)


def run_processes(worker_module: str, job: Path, processes: Processes, *, threads: int) -> None:
    """Run `python -m worker_module job` in every process of `processes` on this machine and
    wait for all of them; a failure raises one OlivepressError naming the first failing process."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as torchrun

    with tempfile.TemporaryDirectory(prefix="olivepress-torchrun-") as logs:
        argv = [
            *processes.torchrun_args(),
            "--max_restarts=0",
            f"--log_dir={logs}",
            "-m",
            worker_module,
            str(job),
        ]
        with _worker_environment(threads), _quiet_launcher():
            try:
                torchrun(parse_args(argv))
            except ChildFailedError as exc:
                rank, message = first_failure(exc.failures)
                raise OlivepressError(
                    f"training process {rank} of {processes.world_size} failed: {message}"
                ) from None


def first_failure(failures: dict) -> tuple[int, str]:
    """The failure to report: the earliest one a process had of its own (not a lost peer)."""

    def message(failure) -> str:
        text = failure.message
        text = text.get("message", "") if isinstance(text, dict) else str(text)
        return " ".join(text.split()).removeprefix("OlivepressError: ")

    def order(rank: int):
        return message(failures[rank]).startswith(PeerLost.__name__), failures[rank].timestamp, rank

    rank = min(failures, key=order)
    return rank, message(failures[rank])


@contextmanager
def _worker_environment(threads: int) -> Iterator[None]:
    """Threads per process, and this olivepress first on the workers' import path."""
    import olivepress

    source = str(Path(olivepress.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    saved = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "PYTHONPATH")}
    os.environ.update(OMP_NUM_THREADS=str(threads), PYTHONPATH=path)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _quiet_launcher() -> Iterator[None]:
    """torchrun's own log lines (its config, each process's exit) only with debug output. Its
    modules each set their logger's level, so each logger is quieted, not a parent."""
    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("torch.distributed")
    ]
    saved = [logger.level for logger in loggers]
    if not log.isEnabledFor(logging.DEBUG):
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)

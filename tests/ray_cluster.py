"""A throwaway Ray cluster on 127.0.0.1 for tests and benchmarks: `ray start --block` nodes of
their own, each in a session of its own, killed (with every process they started) at the end.

`ray stop` is not used: it stops every Ray cluster on the machine, other people's too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
CANDIDATE_TITLE = b"ray::olivepress-candidate"  # the process title of a worker running a candidate

# A throwaway cluster: no token (Ray turns token auth on where ~/.ray/auth_token exists, for the
# nodes but not always for a driver), no usage reports.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass
class LocalRayCluster:
    address: str
    temp: Path
    nodes: list[subprocess.Popen] = field(default_factory=list)

    def processes(self) -> list[int]:
        return [pid for node in self.nodes for pid in session_processes(node.pid)]

    def candidate_workers(self) -> list[int]:
        """Worker processes of this cluster running a candidate right now."""
        running = []
        for pid in self.processes():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(CANDIDATE_TITLE):
                running.append(pid)
        return running


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def session_processes(session: int) -> list[int]:
    """Every process in the session `session` (a node's `ray start` and all it started)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # after the name: state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


def _start_node(args: list[str], log: Path, env: dict[str, str], core: int | None) -> subprocess.Popen:
    ray = str(Path(sys.executable).parent / "ray")
    # Every port a node would take at a fixed default is given a free one, so that two clusters
    # on one machine do not collide.
    ports = [
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
    ]
    fixed = [item for name in ports for item in (name, str(free_port()))]
    pin = ["taskset", "-c", str(core)] if core is not None else []
    return subprocess.Popen(
        [
            *pin,
            ray,
            "start",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(100 * 2**20),
            "--disable-usage-stats",
            *fixed,
            *args,
        ],
        env=env,
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _stop_node(node: subprocess.Popen) -> None:
    for pid in session_processes(node.pid):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    node.wait(timeout=30)


@contextmanager
def local_ray_cluster(
    nodes: int = 2, *, cores: list[int] | None = None, timeout_s: float = 180
) -> Iterator[LocalRayCluster]:
    """A head node and `nodes - 1` worker nodes of one CPU each, on 127.0.0.1 (each pinned to
    a core of `cores` when given). Needs RAY_ENV in the environment of every driver: the
    caller's own environment is updated for the block's duration."""
    import ray

    temp = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths have a length limit
    saved = {name: os.environ.get(name) for name in RAY_ENV}
    os.environ.update(RAY_ENV)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in [str(SRC), os.environ.get("PYTHONPATH")] if p),
    }
    cluster = LocalRayCluster(address=f"127.0.0.1:{free_port()}", temp=temp)
    deadline = time.monotonic() + timeout_s
    try:
        cluster.nodes.append(
            _start_node(
                [
                    "--head",
                    "--port",
                    cluster.address.split(":")[1],
                    "--temp-dir",
                    str(temp),
                    "--include-dashboard",
                    "false",
                    "--ray-client-server-port",
                    str(free_port()),
                    "--dashboard-port",
                    str(free_port()),
                ],
                temp / "head.log",
                env,
                cores[0] if cores else None,
            )
        )
        while not any(temp.glob("session_latest/logs/raylet.out")):
            if cluster.nodes[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start:\n{(temp / 'head.log').read_text()}")
            time.sleep(0.5)
        for index in range(1, nodes):
            core = cores[index % len(cores)] if cores else None
            cluster.nodes.append(
                _start_node(["--address", cluster.address], temp / f"worker{index}.log", env, core)
            )
        ray.init(address=cluster.address, logging_level="WARNING")
        try:
            while ray.cluster_resources().get("CPU", 0) < nodes:
                if any(node.poll() is not None for node in cluster.nodes) or time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray nodes did not join; logs in {temp}")
                time.sleep(0.5)
        finally:
            ray.shutdown()
        yield cluster
    finally:
        for node in reversed(cluster.nodes):
            _stop_node(node)
        shutil.rmtree(temp, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

"""How many CPU cores this process may use, how many of them other work keeps busy, and how many
threads torch runs on (`torch_threads`)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def busy_cores(sample_seconds: float = 0.3) -> float:
    """Cores kept busy by other processes right now, from /proc/stat over a short sample.

    The 1-minute load average is no use here: it still counts the process that finished a
    second ago (a previous pass of the same run), and would halve our threads for nothing.
    This process sleeps while sampling, so all busy time seen is someone else's. 0.0 where
    /proc/stat does not exist.
    """
    first = _cpu_times()
    if first is None:
        return 0.0
    time.sleep(sample_seconds)
    second = _cpu_times()
    if second is None:
        return 0.0
    busy, total = second[0] - first[0], second[1] - first[1]
    return 0.0 if total <= 0 else busy / total * (os.cpu_count() or 1)


def free_cores() -> int:
    """Cores not busy with other work (at least 1): the thread count that does not oversubscribe."""
    cores = available_cores()
    return max(1, min(cores, math.floor(cores - busy_cores() + 0.5)))


def _cpu_times() -> tuple[int, int] | None:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user/nice
    return total - idle, total


class TorchThreads:
    """The torch thread count inside a `torch_threads` block; `use` changes it until the block ends."""

    def __init__(self, count: int):
        self.count = count

    def use(self, count: int) -> None:
        import torch

        torch.set_num_threads(count)
        self.count = count


@contextmanager
def torch_threads(count: int | None = None) -> Iterator[TorchThreads]:
    """Run the block with `count` torch threads (default: the free cores), then restore the count before.

    torch's OpenMP threads meet at a barrier after every op; when another process holds one of
    the cores, every op waits for the thread that got descheduled, so a thread per busy core
    costs far more than it brings (docs/benchmarks.md has the measurements). Every change of
    torch's thread count in olivepress goes through here.
    """
    import torch

    previous = torch.get_num_threads()
    threads = TorchThreads(previous)
    threads.use(free_cores() if count is None else count)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)

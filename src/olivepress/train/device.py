"""Where and in what precision training runs: threads, device, autocast dtype."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from olivepress.cpu import available_cores, torch_threads
from olivepress.errors import OlivepressError

if TYPE_CHECKING:
    import torch

    from olivepress.train.args import TrainingArgs


def training_device() -> torch.device:
    """CUDA when torch sees a GPU, else the CPU (olivepress's main target)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def training_threads() -> int:
    """The threads training starts on: one per core this process may run on, unless
    OMP_NUM_THREADS says otherwise."""
    import torch

    return torch.get_num_threads() if os.environ.get("OMP_NUM_THREADS") else available_cores()


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX512-BF16, AMX, or Arm's BF16).

    Without it, oneDNN emulates bf16 and a bf16 step is slower than an fp32 one (figures in
    docs/benchmarks.md, fine-tuning), so autocast would only cost time.
    """
    flags = _cpu_flags()
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "bf16" in flags or platform.system() == "Darwin" and _apple_bf16()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def autocast_dtype(args: TrainingArgs, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training (None: plain fp32), from args.bf16 / args.fp16."""
    import torch

    if args.fp16:
        if device.type != "cuda":
            raise OlivepressError(
                "fp16 mixed precision needs a GPU and this run trains on the CPU; leave fp16 unset "
                "(bf16 is used where the CPU computes it natively) or set bf16"
            )
        return torch.float16
    if args.bf16 is None:
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
        return torch.bfloat16 if native else None
    return torch.bfloat16 if args.bf16 else None


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _apple_bf16() -> bool:
    import subprocess

    try:
        out = subprocess.run(
            ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip() == "1"


class ThreadTuner:
    """All cores, unless one thread measures faster: on a machine whose cores are busy with
    other work, OpenMP threads that spin while waiting for each other can make a training
    step several times slower than one thread (docs/benchmarks.md, fine-tuning).

    `calibrate` times a forward pass on one thread and on all cores before training starts;
    then every `recheck` steps one step runs on all cores and the next on one thread, and the
    faster per token is kept until the next check. The thread count changes the order of some
    float sums, so runs are bitwise repeatable only with `fixed=True`
    (training_args.full_determinism, or OMP_NUM_THREADS set).
    """

    def __init__(self, cores: int, *, fixed: bool, recheck: int = 50):
        self.cores = cores
        self.enabled = cores > 1 and not fixed
        self.recheck = recheck
        self.choice = cores
        self._per_token: dict[int, float] = {}

    def calibrate(self, work: Callable[[], object]) -> str | None:
        """Time `work` (a forward pass) on one thread and on all cores, after one untimed run."""
        if not self.enabled:
            return None
        with torch_threads(1):
            work()
        timings = {}
        for threads in (1, self.cores):
            with torch_threads(threads):
                started = time.perf_counter()
                work()
                timings[threads] = time.perf_counter() - started
        return self._decide(many=timings[self.cores], one=timings[1])

    def threads_for(self, step: int) -> int:
        phase = step % self.recheck
        if self.enabled and step >= self.recheck and phase in (0, 1):
            return self.cores if phase == 0 else 1
        return self.choice

    def observe(self, step: int, tokens: int, seconds: float) -> str | None:
        """Record a timed step; returns a message when the choice changes."""
        phase = step % self.recheck
        if not self.enabled or step < self.recheck or phase not in (0, 1) or tokens == 0:
            return None
        self._per_token[self.cores if phase == 0 else 1] = seconds / tokens
        if phase == 0:
            return None
        return self._decide(many=self._per_token[self.cores], one=self._per_token[1])

    def _decide(self, *, many: float, one: float) -> str | None:
        previous, self.choice = self.choice, 1 if one < 0.8 * many else self.cores
        if self.choice == previous:
            return None
        if self.choice == 1:
            return (
                f"training on 1 thread: it ran {many / one:.1f}x faster than {self.cores} "
                "(the cores are busy with other work)"
            )
        return f"training on {self.cores} threads again: the cores are free"

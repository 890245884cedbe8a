"""What a model costs to keep and to load: size on disk and peak memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from olivepress.models.handles import HfModel, ModelHandle


def size_on_disk_mb(model: ModelHandle) -> float:
    """Every file of the model folder (and of its PEFT adapter), in MB (10^6 bytes)."""
    folders = [model.folder]
    if isinstance(model, HfModel) and model.adapter_path:
        folders.append(Path(model.adapter_path))
    total = sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())
    return total / 1e6


def peak_rss_mb(work: Callable[[], object], interval_s: float = 0.005) -> float:
    """How far the process's resident memory rises above where it was while `work` runs (MB).

    Sampled from another thread: the model load and one run are what it covers, which is what
    a device must have free to serve the model.
    """
    import psutil

    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    peak = max(peak, process.memory_info().rss)
    return (peak - baseline) / 1e6

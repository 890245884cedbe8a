"""The pass cache: one folder per (input fingerprint, pass, pass version, config).

Layout: ``<cache_dir>/runs/<key>/model/`` holds the pass's output model and
``<cache_dir>/runs/<key>/result.json`` its handle and timings. An entry is written into a
temporary folder and renamed into place only when the pass has finished, so an entry that
exists is complete, and a killed run leaves only a temporary folder that the next run clears.
``<cache_dir>/locks/<key>.lock`` is held while an entry is built, so that processes sharing the
cache (Ray workers on several nodes of a shared folder) build each entry once.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from pydantic import TypeAdapter

from olivepress.models.fingerprint import text_fingerprint
from olivepress.models.handles import ModelHandle
from olivepress.paths import atomic_folder, remove_abandoned_temps

_HANDLE = TypeAdapter(ModelHandle)


@dataclass(frozen=True)
class CacheEntry:
    key: str
    handle: ModelHandle
    duration_s: float
    from_cache: bool


def pass_key(input_fingerprint: str, pass_type: str, pass_version: int, config: dict[str, Any]) -> str:
    return text_fingerprint(input_fingerprint, pass_type, pass_version, config)[:32]


class PassCache:
    def __init__(self, cache_dir: Path):
        self.root = cache_dir
        self.runs = cache_dir / "runs"
        self.scratch = cache_dir / "scratch"
        self.runs.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        remove_abandoned_temps(self.runs)

    def clean(self) -> None:
        shutil.rmtree(self.runs, ignore_errors=True)
        shutil.rmtree(self.root / "locks", ignore_errors=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.runs.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)

    def lookup(self, key: str) -> CacheEntry | None:
        entry = self.runs / key
        result = entry / "result.json"
        if not result.is_file():
            return None
        data = json.loads(result.read_text())
        handle = _rebase(_HANDLE.validate_python(data["handle"]), entry)
        return CacheEntry(key=key, handle=handle, duration_s=data["duration_s"], from_cache=True)

    def get_or_run(self, key: str, produce) -> CacheEntry:
        """The entry for `key`, built by ``produce(model_dir) -> handle`` unless it exists.

        Another process (another node, on a shared cache) may be building this very entry: its
        lock makes this one wait and then read the entry rather than build it twice.
        """
        entry = self.lookup(key)
        if entry is not None:
            return entry
        with self._claim(key):
            return self.lookup(key) or self.run_into(key, produce)

    @contextmanager
    def _claim(self, key: str) -> Iterator[None]:
        # An OS file lock, so a killed holder releases it; lock files are a few bytes and stay.
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(locks / f"{key}.lock"):
            yield

    def run_into(self, key: str, produce) -> CacheEntry:
        """Run ``produce(model_dir) -> handle`` into a fresh entry and commit it when it returns."""
        entry = self.runs / key
        started = time.perf_counter()
        with atomic_folder(entry) as tmp:
            model_dir = tmp / "model"
            model_dir.mkdir()
            handle = produce(model_dir)
            duration = time.perf_counter() - started
            stored = _relative_to(handle, tmp)
            (tmp / "result.json").write_text(
                json.dumps({"handle": stored.model_dump(), "duration_s": duration}, indent=2)
            )
        return CacheEntry(key=key, handle=_rebase(stored, entry), duration_s=duration, from_cache=False)


def _map_paths(handle: ModelHandle, change) -> ModelHandle:
    update: dict[str, Any] = {"path": change(handle.path)}
    if getattr(handle, "adapter_path", None):
        update["adapter_path"] = change(handle.adapter_path)
    if getattr(handle, "adapters", None):
        update["adapters"] = {name: change(path) for name, path in handle.adapters.items()}
    return handle.model_copy(update=update)


def _relative_to(handle: ModelHandle, root: Path) -> ModelHandle:
    """Paths inside the entry become relative, so the entry survives being renamed or moved."""

    def change(path: str) -> str:
        try:
            return Path(path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return path

    return _map_paths(handle, change)


def _rebase(handle: ModelHandle, entry: Path) -> ModelHandle:
    return _map_paths(handle, lambda path: path if Path(path).is_absolute() else str(entry / path))

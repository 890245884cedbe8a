"""Content fingerprints for cache keys.

A file's SHA-256 is computed once and remembered by (absolute path, size, mtime), so an
unchanged model is not re-hashed on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from olivepress.paths import olivepress_home

_MEMO_LOCK = threading.Lock()
_memo: dict[str, str] | None = None


def _memo_file() -> Path:
    return olivepress_home() / "fingerprints.json"


def _load_memo() -> dict[str, str]:
    global _memo
    if _memo is None:
        try:
            _memo = json.loads(_memo_file().read_text())
        except (OSError, ValueError):
            _memo = {}
    return _memo


def _save_memo(memo: dict[str, str]) -> None:
    path = _memo_file()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(memo))
    tmp.replace(path)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, memoised by path, size and modification time."""
    path = path.resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    with _MEMO_LOCK:
        memo = _load_memo()
        if key in memo:
            return memo[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _MEMO_LOCK:
        memo = _load_memo()
        memo[key] = value
        _save_memo(memo)
    return value


def folder_fingerprint(folder: Path) -> str:
    """SHA-256 over every file's relative path and content digest (hidden files skipped)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(f"{rel.as_posix()}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()


def text_fingerprint(*parts: object) -> str:
    """SHA-256 of a JSON rendering of `parts` (keys sorted, so dict order does not matter)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

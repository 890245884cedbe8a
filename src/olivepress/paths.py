"""Where olivepress keeps its own files, and writing folders atomically."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from olivepress.errors import OlivepressError


def olivepress_home() -> Path:
    """Per-user folder for converted models and fingerprints (env OLIVEPRESS_HOME overrides)."""
    home = os.environ.get("OLIVEPRESS_HOME")
    base = (
        Path(home) if home else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "olivepress"
    )
    base.mkdir(parents=True, exist_ok=True)
    return base


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_sibling(final: Path) -> Path:
    """A fresh temporary path beside `final`, named so a later run can tell it is abandoned:
    the writer's pid and, as a folder may be shared by several machines, its host."""
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{socket.gethostname()}"


def remove_abandoned_temps(folder: Path) -> None:
    """Delete temporary folders left in `folder` by processes of this host that no longer run
    (killed runs); another host's pids mean nothing here, so its folders are left alone."""
    if not folder.is_dir():
        return
    host = socket.gethostname()
    for entry in folder.glob(".*.tmp-*"):
        fields = entry.name.rsplit(".tmp-", 1)[1].split("-", 2)
        try:
            pid = int(fields[0])
        except ValueError:
            continue
        if len(fields) == 3 and fields[2] != host:
            continue
        if not _pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary folder that becomes `final` only if the block finishes.

    A killed or failed run leaves no half-written `final` behind, only a temporary folder
    that `remove_abandoned_temps` clears later. An existing `final` is replaced.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = temp_sibling(final)
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final` that is renamed to `final` only if the block finishes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{final.suffix}"
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(final)


def check_writable(folder: Path, what: str) -> None:
    """Fail early, before any work, when `folder` cannot be created or written.

    Probes by writing a file in the nearest existing ancestor (permission bits alone say
    nothing for root or on a read-only file system); creates nothing that stays.
    """
    ancestor = folder
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OlivepressError(f"{what} {folder} cannot be created: {ancestor} is a file; choose another path")
    probe = ancestor / f".olivepress-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OlivepressError(
            f"{what} {folder} is not writable ({exc.strerror} in {ancestor}); choose a folder you can "
            "write to"
        ) from None

"""Sending a noisy library's output (Python and native prints alike) to a log file."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def output_to_file(log_file: Path, status: str | None = None) -> Iterator[None]:
    """Redirect file descriptors 1 and 2 into `log_file` for the block.

    The ORT GenAI builder prints thousands of progress lines from Python and C++; the user
    sees `status` with a spinner and the elapsed time instead (on a terminal), and the full
    log stays on disk for debugging.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_file.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with _spinner(saved[1], status):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def tail(log_file: Path, lines: int = 5) -> str:
    """The last non-empty lines of a log, for an error message."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


@contextmanager
def _spinner(terminal_fd: int, status: str | None) -> Iterator[None]:
    """A spinner with elapsed time on the real terminal (a copy of the original stderr)."""
    if status is None or not os.isatty(terminal_fd):
        yield
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with os.fdopen(os.dup(terminal_fd), "w") as terminal:
        console = Console(file=terminal, force_terminal=True)
        columns = (SpinnerColumn(), TextColumn(status), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            progress.add_task(status, total=None)
            yield

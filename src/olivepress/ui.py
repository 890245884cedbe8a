"""Terminal output: logging setup, progress, and the end-of-run summary."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console

T = TypeVar("T")

console = Console(stderr=True, highlight=False)

# Olive's --log_level numbers: 0 verbose ... 4 critical.
LOG_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR, 4: logging.CRITICAL}


def setup_logging(log_level: int = 1) -> None:
    level = LOG_LEVELS.get(log_level, logging.INFO)
    logger = logging.getLogger("olivepress")
    logger.handlers.clear()
    # Plain lines (no wrapping or boxes): they read the same in a terminal and in a CI log.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    # Libraries' own chatter only when the user asked for debug output.
    quiet = level > logging.DEBUG
    for name in ("transformers", "datasets", "onnxruntime", "peft", "accelerate", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR if quiet else logging.INFO)
    if quiet:
        _quiet_libraries()


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            message = f"{record.levelname.lower()}: {message}"
        if record.exc_info and record.levelno <= logging.DEBUG:
            message += "\n" + self.formatException(record.exc_info)
        return message


def _quiet_libraries() -> None:
    # Environment variables reach transformers whenever it is imported later; importing it
    # here just to quiet it would cost a second on commands that never need it.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.set_verbosity_error()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """A progress bar on an interactive terminal; a line every ~10% otherwise (CI logs stay short)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    log = logging.getLogger("olivepress")
    if sys.stderr.isatty() and log.isEnabledFor(logging.INFO):
        from rich.progress import track as rich_track

        yield from rich_track(items, description=description, total=total, console=console, transient=True)
        return
    step = max(1, (total or 10) // 10)
    for index, item in enumerate(items, start=1):
        yield item
        if total and (index % step == 0 or index == total):
            log.info("%s %d/%d", description, index, total)

"""Training progress on the terminal: a live bar (step, loss, tokens/s, ETA) on an interactive
terminal, one log line per logging step otherwise (CI logs stay readable). Quiet (nothing at
all) on the processes of a multi-process run other than the first."""

from __future__ import annotations

import logging
import sys
import time

from olivepress.ui import console

log = logging.getLogger("olivepress")


class TrainingProgress:
    def __init__(self, total_steps: int, description: str = "training", *, quiet: bool = False):
        self.total = total_steps
        self.quiet = quiet
        self.description = description
        self.started = time.perf_counter()
        self._bar = None
        self._task = None

    def __enter__(self) -> TrainingProgress:
        if sys.stderr.isatty() and log.isEnabledFor(logging.INFO) and not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[speed]} tok/s"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, loss="-", speed="-")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def step(
        self, step: int, loss: float, tokens_per_s: float, *, log_line: bool, learning_rate: float
    ) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=step, loss=f"{loss:.3f}", speed=f"{tokens_per_s:,.0f}")
            return
        if log_line:
            log.info(
                "step %d/%d  loss %.4f  lr %.2e  %.0f tok/s  eta %s",
                step,
                self.total,
                loss,
                learning_rate,
                tokens_per_s,
                _eta(self.started, step, self.total),
            )

    def note(self, message: str) -> None:
        """A line above the bar (or in the log): eval results and the like."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.console.print(message)
        else:
            log.info("%s", message)


def _eta(started: float, done: int, total: int) -> str:
    if done == 0:
        return "-"
    left = (time.perf_counter() - started) / done * (total - done)
    minutes, seconds = divmod(round(left), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"

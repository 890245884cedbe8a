"""What a training run counts and writes down: the meter (loss, tokens, padding, time) and the
JSON-lines training log."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from olivepress.train.micro_batches import Batch


class TrainMeter:
    """Counters of one training run.

    Totals (tokens, padding, sequences, time spent evaluating) run from start to end; the
    window (summed loss, labelled targets, tokens, its start time) covers the steps since the
    last training log line, so each `train` record holds that window's token-weighted loss.
    Counts are this process's own; in a multi-process run the loop sums them over processes.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.tokens = 0  # tokens run through the model, padding included
        self.padding = 0
        self.sequences = 0
        self.eval_seconds = 0.0
        self.window_loss = 0.0  # summed (not mean) loss of the window's micro-batches
        self.window_targets = 0
        self.window_tokens = 0
        self.window_started = self.started

    def add_batch(self, batch: Batch, loss_sum: float) -> None:
        """One micro-batch run forward and backward, with its summed loss."""
        self.window_loss += loss_sum
        self.tokens += batch.num_tokens
        self.window_tokens += batch.num_tokens
        if batch.attention_mask is not None:
            self.padding += batch.num_tokens - int(batch.attention_mask.sum())
        self.sequences += batch.input_ids.shape[0]

    def add_targets(self, targets: int) -> None:
        """The labelled targets of one optimizer step (all its micro-batches, on every process)."""
        self.window_targets += targets

    def new_window(self) -> None:
        self.window_loss = self.window_targets = 0.0
        self.window_started, self.window_tokens = time.perf_counter(), 0

    def window_seconds(self) -> float:
        return max(time.perf_counter() - self.window_started, 1e-9)

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Time an evaluation; the window's clock restarts after it, so tokens/s counts training only."""
        eval_started = time.perf_counter()
        yield
        self.eval_seconds += time.perf_counter() - eval_started
        self.window_started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class TrainingLog:
    """Appends JSON lines to the training log (and keeps them, for the result). With no path
    (or on a process other than the first of a multi-process run) it only keeps them."""

    def __init__(self, path: Path | None):
        self.path = path
        self.history: list[dict[str, Any]] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def __call__(self, **entry: Any) -> None:
        entry = {key: (None if isinstance(v, float) and math.isnan(v) else v) for key, v in entry.items()}
        self.history.append(entry)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(entry) + "\n")

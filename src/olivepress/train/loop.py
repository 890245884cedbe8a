"""The training loop: a plain PyTorch loop over length-grouped micro-batches.

Why not the HF `Trainer`: on a CPU its defaults cost most of the time (the corpus joined into
1024-token chunks, logits for every position, bf16 emulated where the CPU has no bf16
units), and its machinery (accelerate, callbacks, checkpoints) adds nothing for one adapter
trained on one device. This loop honours the same `TrainingArguments` names (see args.py):

- an optimizer step takes `gradient_accumulation_steps` micro-batches and divides the summed
  loss by the number of labelled tokens in all of them, so every token weighs the same
  however the batches are cut;
- `max_steps` (or `num_train_epochs`), warmup and `lr_scheduler_type` through transformers'
  schedulers, AdamW with `adam_beta1/2`, `adam_epsilon`, `weight_decay`, `max_grad_norm`;
- eval loss (token-weighted) before training, every `eval_steps` (or each epoch), and at the end;
- all cores, unless one thread measures faster (a machine busy with other work; see
  device.ThreadTuner), and bf16 autocast only where the CPU computes bf16 natively;
- one JSON object per line in `log_path`: a `start` record, `train` records every
  `logging_steps`, `eval` records, and an `end` record with the totals.

A run is a `_TrainingRun` taken through named steps: start (threads, first eval), one
optimizer step after another, a log line per window, evaluations, finish.

Several processes (`world`, see world.py) train as one: each runs its share of every global
batch and the gradients are summed before the optimizer step, so with the same global batch
(per_device_train_batch_size x gradient_accumulation_steps, whatever the process count) the
result is the one-process result up to float rounding. Dropout draws are seeded per
micro-batch of the global stream, so they do not depend on which process runs it either. The
first process writes the log; counts in it are sums over the processes.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olivepress.cpu import TorchThreads, torch_threads
from olivepress.errors import OlivepressError
from olivepress.train.args import TrainingArgs
from olivepress.train.device import ThreadTuner, autocast_dtype, training_device, training_threads
from olivepress.train.hooks import enable_checkpointing, neftune_hook
from olivepress.train.loss import summed_loss
from olivepress.train.meter import TrainingLog, TrainMeter
from olivepress.train.micro_batches import Batch, epoch_batches, eval_batches
from olivepress.train.optim import make_optimizer, make_scheduler
from olivepress.train.plan import TrainingPlan
from olivepress.train.progress import TrainingProgress
from olivepress.train.world import World

if TYPE_CHECKING:
    import torch

log = logging.getLogger("olivepress")

Examples = Sequence[dict[str, list[int]]]


@dataclass
class TrainResult:
    steps: int
    epochs: float
    train_loss: float  # mean over the last logging window
    eval_loss_before: float | None
    eval_loss: float | None
    train_tokens: int  # tokens run through the model, padding included
    padding_fraction: float
    runtime_s: float
    precision: str
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.train_tokens / self.runtime_s if self.runtime_s else 0.0


def train(
    model: torch.nn.Module,
    train_examples: Examples,
    eval_examples: Examples,
    args: TrainingArgs,
    *,
    pad_id: int,
    log_path: Path | None = None,
    world: World | None = None,
) -> TrainResult:
    """Train the trainable parameters of `model` (e.g. a PEFT model) on `train_examples`,
    alone or as one of the processes of `world` (which write `log_path` on rank 0 only)."""
    if not train_examples:
        raise OlivepressError(
            "there are no training sequences; give a data set with at least one non-empty text"
        )
    with torch_threads(training_threads()) as scope:
        run = _TrainingRun(
            scope, model, train_examples, eval_examples, args, pad_id, log_path, world or World()
        )
        run.start()
        with TrainingProgress(run.plan.total_steps, quiet=not run.world.is_main) as progress:
            run.evaluate_before(progress)
            for step in range(1, run.plan.total_steps + 1):
                run.optimizer_step(step, progress)
                if run.plan.evaluates_at(step):
                    run.evaluate(step, progress)
        return run.finish()


class _TrainingRun:
    """One training run's state: the model and its optimizer, the data stream, meter and log."""

    def __init__(
        self,
        scope: TorchThreads,
        model,
        train_examples: Examples,
        eval_examples: Examples,
        args: TrainingArgs,
        pad_id: int,
        log_path: Path | None,
        world: World,
    ):
        self.scope, self.model, self.args, self.pad_id, self.world = scope, model, args, pad_id, world
        self.train_examples, self.eval_examples = train_examples, eval_examples
        self.threads = scope.count
        self.device = training_device()
        fixed = args.full_determinism or bool(os.environ.get("OMP_NUM_THREADS")) or self.device.type != "cpu"
        self.tuner = ThreadTuner(self.threads, fixed=fixed)
        model.to(self.device)
        self.dtype = autocast_dtype(args, self.device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise OlivepressError("the model has no trainable parameters; check target_modules")
        world.same_start(self.params)
        self.plan = TrainingPlan.of(len(train_examples), args, bool(eval_examples))
        self.optimizer = make_optimizer(self.params, args)
        self.scheduler = make_scheduler(self.optimizer, args, self.plan.warmup, self.plan.total_steps)
        self.checkpointing = bool(args.gradient_checkpointing) and enable_checkpointing(model, args)
        self.neftune = neftune_hook(model, args.neftune_noise_alpha)
        self.record = TrainingLog(log_path if world.is_main else None)
        self.meter: TrainMeter | None = None
        self.micro: Iterator[Batch] = iter(())
        self.last_loss, self.eval_before, self.eval_loss = float("nan"), None, None

    @property
    def precision(self) -> str:
        if self.dtype is None:
            return "fp32"
        return str(self.dtype).removeprefix("torch.").replace("bfloat16", "bf16").replace("float16", "fp16")

    def start(self) -> None:
        """Write the start record, then pick the thread count on the first micro-batch."""
        import torch

        trainable = sum(p.numel() for p in self.params)
        plan, world = self.plan, self.world
        processes = {}
        if world.size > 1:
            args = self.args
            layout = world.layout(args.gradient_accumulation_steps, args.per_device_train_batch_size)
            processes = {"processes": world.size, **layout}
        self.record(
            event="start",
            total_steps=plan.total_steps,
            steps_per_epoch=plan.steps_per_epoch,
            sequences=len(self.train_examples),
            eval_sequences=len(self.eval_examples),
            trainable_params=trainable,
            precision=self.precision,
            gradient_checkpointing=self.checkpointing,
            threads=self.threads,
            device=str(self.device),
            args=self.args.model_dump(mode="json"),
            **processes,
        )
        where = f"{self.threads} threads" + (f" in each of {world.size} processes" if world.size > 1 else "")
        log.info(
            "Training %s parameters on %d sequences for %d steps (%s, %s)",
            f"{trainable:,}",
            len(self.train_examples),
            plan.total_steps,
            self.precision,
            where,
        )
        self.meter = TrainMeter()
        micro = _micro_batches(self.train_examples, self.args, self.pad_id)
        first = next(micro)
        threads_note = self.tuner.calibrate(lambda: _forward(self.model, first, self.device, self.dtype))
        self.scope.use(self.tuner.choice)
        if threads_note:
            log.info("%s", threads_note)
            self.record(event="threads", step=0, threads=self.tuner.choice, message=threads_note)
        self.micro = itertools.chain([first], micro)
        torch.manual_seed(self.args.seed)  # dropout draws

    def evaluate_before(self, progress: TrainingProgress) -> None:
        if self.eval_examples and self.args.eval_on_start:
            self.eval_before = self.eval_loss = self._eval_loss()
            self.record(event="eval", step=0, epoch=0.0, eval_loss=self.eval_before)
            progress.note(f"eval loss before training: {self.eval_before:.4f}")
        self.meter.new_window()
        self.model.train()

    def optimizer_step(self, step: int, progress: TrainingProgress) -> None:
        """Forward and backward over the step's micro-batches, clip, update; then the log line."""
        import torch

        meter = self.meter
        self.scope.use(self.tuner.threads_for(step))
        step_started = time.perf_counter()
        accumulation = self.args.gradient_accumulation_steps
        group = [next(self.micro) for _ in range(accumulation)]
        # The whole global batch's targets: every process divides by the same count.
        targets = sum(batch.num_targets for batch in group)
        mine = self.world.share(group)
        for index, batch in mine:
            torch.manual_seed(_dropout_seed(self.args.seed, (step - 1) * accumulation + index))
            with _autocast(self.device, self.dtype):
                loss_sum = summed_loss(self.model, batch, self.args.label_smoothing_factor)
            (loss_sum / max(targets, 1)).backward()
            meter.add_batch(batch, float(loss_sum.detach()))
        meter.add_targets(targets)
        self.world.sum_gradients(self.params)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.args.max_grad_norm or float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        step_tokens = sum(batch.num_tokens for _, batch in mine)
        change = self.tuner.observe(step, step_tokens, time.perf_counter() - step_started)
        if change:
            progress.note(change)
            self.record(event="threads", step=step, threads=self.tuner.choice, message=change)

        window_loss, window_tokens = self.world.sum([meter.window_loss, meter.window_tokens])
        speed = window_tokens / meter.window_seconds()
        running = window_loss / max(meter.window_targets, 1)
        is_log = self.plan.logs_at(step)
        learning_rate = self.scheduler.get_last_lr()[0]
        progress.step(step, running, speed, log_line=is_log, learning_rate=learning_rate)
        if is_log:
            self.last_loss = running
            self.record(
                event="train",
                step=step,
                epoch=round(self.plan.epoch(step), 4),
                loss=running,
                learning_rate=learning_rate,
                grad_norm=float(grad_norm),
                tokens_per_s=round(speed, 1),
                elapsed_s=round(meter.elapsed(), 2),
            )
            meter.new_window()

    def evaluate(self, step: int, progress: TrainingProgress) -> None:
        with self.meter.evaluating():
            self.eval_loss = self._eval_loss()
        self.model.train()
        self.record(event="eval", step=step, epoch=round(self.plan.epoch(step), 4), eval_loss=self.eval_loss)
        progress.note(f"step {step}/{self.plan.total_steps}: eval loss {self.eval_loss:.4f}")

    def finish(self) -> TrainResult:

        self.scope.use(self.threads)
        if self.neftune is not None:
            self.neftune.remove()
        self.model.eval()
        meter, plan = self.meter, self.plan
        runtime = meter.elapsed()
        tokens, padding = (int(n) for n in self.world.sum([meter.tokens, meter.padding]))
        processes = {}
        if self.world.size > 1:
            # Proof that every process trained: what each one ran through the model.
            processes = {
                "sequences_per_process": self.world.gather(meter.sequences),
                "tokens_per_process": self.world.gather(meter.tokens),
            }
        result = TrainResult(
            steps=plan.total_steps,
            epochs=plan.epoch(plan.total_steps),
            train_loss=self.last_loss,
            eval_loss_before=self.eval_before,
            eval_loss=self.eval_loss,
            train_tokens=tokens,
            padding_fraction=padding / tokens if tokens else 0.0,
            runtime_s=runtime,
            precision=self.precision,
            history=self.record.history,
        )
        self.record(
            event="end",
            steps=result.steps,
            epochs=round(result.epochs, 4),
            train_loss=result.train_loss,
            eval_loss_before=self.eval_before,
            eval_loss=self.eval_loss,
            train_tokens=tokens,
            padding_fraction=round(result.padding_fraction, 4),
            runtime_s=round(runtime, 2),
            eval_runtime_s=round(meter.eval_seconds, 2),
            threads=self.tuner.choice,
            tokens_per_s=round(tokens / max(runtime - meter.eval_seconds, 1e-9), 1),
            **processes,
        )
        return result

    def _eval_loss(self) -> float:
        batch_size = self.args.per_device_eval_batch_size
        return evaluate_loss(self.model, self.eval_examples, batch_size, self.pad_id, self.dtype, self.world)


def evaluate_loss(
    model: torch.nn.Module,
    examples: Examples,
    batch_size: int,
    pad_id: int,
    dtype=None,
    world: World | None = None,
) -> float:
    """Token-weighted mean next-token loss of `model` on `examples` (split over `world`'s processes)."""
    import torch

    world = world or World()
    device = training_device()
    was_training = model.training
    model.eval()
    total = count = 0.0
    with torch.no_grad():
        for batch in eval_batches(examples, batch_size, pad_id)[world.rank :: world.size]:
            with _autocast(device, dtype):
                total += float(summed_loss(model, batch))
            count += batch.num_targets
    model.train(was_training)
    total, count = world.sum([total, count])
    return total / count if count else float("nan")


def _forward(model, batch: Batch, device, dtype) -> None:
    """One forward pass in eval mode (no dropout draws, so the seeded training is unchanged)."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad(), _autocast(device, dtype):
        summed_loss(model, batch)
    model.train(was_training)


def _micro_batches(examples: Examples, args: TrainingArgs, pad_id: int) -> Iterator[Batch]:
    """Micro-batches epoch after epoch (each epoch reshuffled), for as long as steps need them."""
    epoch = 0
    while True:
        yield from epoch_batches(
            examples,
            args.per_device_train_batch_size,
            seed=args.order_seed + epoch,
            group_by_length=args.group_by_length,
            pad_id=pad_id,
        )
        epoch += 1


def _dropout_seed(seed: int, micro_batch: int) -> int:
    """The seed of dropout (and NEFTune) draws for one micro-batch of the global stream."""
    return seed * 1_000_003 + micro_batch


def _autocast(device, dtype):
    import torch

    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

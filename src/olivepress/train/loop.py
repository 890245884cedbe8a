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
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olivepress.cpu import TorchThreads, torch_threads
from olivepress.errors import OlivepressError
from olivepress.train.args import ADAMW_OPTIMIZERS, TrainingArgs
from olivepress.train.batching import Batch, epoch_batches, eval_batches
from olivepress.train.device import ThreadTuner, autocast_dtype, training_device, training_threads
from olivepress.train.loss import summed_loss
from olivepress.train.progress import TrainingProgress

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
) -> TrainResult:
    """Train the trainable parameters of `model` (e.g. a PEFT model) on `train_examples`."""
    with torch_threads(training_threads()) as scope:
        return _train(scope, model, train_examples, eval_examples, args, pad_id=pad_id, log_path=log_path)


def _train(
    scope: TorchThreads,
    model: torch.nn.Module,
    train_examples: Examples,
    eval_examples: Examples,
    args: TrainingArgs,
    *,
    pad_id: int,
    log_path: Path | None,
) -> TrainResult:
    import torch

    if not train_examples:
        raise OlivepressError("there are no training sequences; give a data set with at least one non-empty text")
    threads = scope.count
    device = training_device()
    fixed = args.full_determinism or bool(os.environ.get("OMP_NUM_THREADS")) or device.type != "cpu"
    tuner = ThreadTuner(threads, fixed=fixed)
    model.to(device)
    dtype = autocast_dtype(args, device)
    precision = "fp32" if dtype is None else str(dtype).removeprefix("torch.").replace("bfloat16", "bf16").replace("float16", "fp16")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise OlivepressError("the model has no trainable parameters; check target_modules")

    batches_per_epoch = math.ceil(len(train_examples) / args.per_device_train_batch_size)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / args.gradient_accumulation_steps))
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(steps_per_epoch * args.num_train_epochs)
    optimizer = _optimizer(params, args)
    warmup = args.warmup_steps or math.ceil(args.warmup_ratio * total_steps)
    scheduler = _scheduler(optimizer, args, warmup, total_steps)
    eval_every = _eval_interval(args, bool(eval_examples), steps_per_epoch)
    evaluate = _evaluator(model, eval_examples, args, pad_id, dtype)
    if args.gradient_checkpointing:
        _enable_checkpointing(model, args)
    neftune = _neftune_hook(model, args.neftune_noise_alpha)

    record = _Recorder(log_path)
    trainable = sum(p.numel() for p in params)
    record(
        event="start", total_steps=total_steps, steps_per_epoch=steps_per_epoch, sequences=len(train_examples),
        eval_sequences=len(eval_examples), trainable_params=trainable, precision=precision, threads=threads,
        device=str(device), args=args.model_dump(mode="json"),
    )
    log.info(
        "Training %s parameters on %d sequences for %d steps (%s, %d threads)",
        f"{trainable:,}", len(train_examples), total_steps, precision, threads,
    )
    started = time.perf_counter()
    micro = _micro_batches(train_examples, args, pad_id)
    first = next(micro)
    threads_note = tuner.calibrate(lambda: _forward(model, first, device, dtype))
    scope.use(tuner.choice)
    if threads_note:
        log.info("%s", threads_note)
        record(event="threads", step=0, threads=tuner.choice, message=threads_note)
    micro = itertools.chain([first], micro)
    torch.manual_seed(args.seed)  # dropout draws
    eval_before = evaluate() if eval_examples and args.eval_on_start else None
    if eval_before is not None:
        record(event="eval", step=0, epoch=0.0, eval_loss=eval_before)
    tokens = padded = 0
    window_loss = window_targets = 0.0
    last_loss, eval_loss = float("nan"), eval_before
    window_started, window_tokens = time.perf_counter(), 0
    eval_time = 0.0
    model.train()
    with TrainingProgress(total_steps) as progress:
        if eval_before is not None:
            progress.note(f"eval loss before training: {eval_before:.4f}")
        for step in range(1, total_steps + 1):
            scope.use(tuner.threads_for(step))
            step_started = time.perf_counter()
            group = [next(micro) for _ in range(args.gradient_accumulation_steps)]
            targets = sum(batch.num_targets for batch in group)
            for batch in group:
                with _autocast(device, dtype):
                    loss_sum = summed_loss(model, batch, args.label_smoothing_factor)
                (loss_sum / max(targets, 1)).backward()
                window_loss += float(loss_sum.detach())
                tokens += batch.num_tokens
                window_tokens += batch.num_tokens
                padded += batch.num_tokens - int(batch.attention_mask.sum()) if batch.attention_mask is not None else 0
            window_targets += targets
            grad_norm = torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm or float("inf"))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            change = tuner.observe(step, sum(b.num_tokens for b in group), time.perf_counter() - step_started)
            if change:
                progress.note(change)
                record(event="threads", step=step, threads=tuner.choice, message=change)

            speed = window_tokens / max(time.perf_counter() - window_started, 1e-9)
            is_log = step % args.logging_steps == 0 or step == total_steps
            running = window_loss / max(window_targets, 1)
            progress.step(step, running, speed, log_line=is_log, learning_rate=scheduler.get_last_lr()[0])
            if is_log:
                last_loss = running
                record(
                    event="train", step=step, epoch=round(_epoch(step, args, batches_per_epoch), 4), loss=running,
                    learning_rate=scheduler.get_last_lr()[0], grad_norm=float(grad_norm), tokens_per_s=round(speed, 1),
                    elapsed_s=round(time.perf_counter() - started, 2),
                )
                window_loss = window_targets = 0.0
                window_started, window_tokens = time.perf_counter(), 0
            if eval_every and (step % eval_every == 0 or step == total_steps):
                eval_started = time.perf_counter()
                eval_loss = evaluate()
                eval_time += time.perf_counter() - eval_started
                model.train()
                record(event="eval", step=step, epoch=round(_epoch(step, args, batches_per_epoch), 4), eval_loss=eval_loss)
                progress.note(f"step {step}/{total_steps}: eval loss {eval_loss:.4f}")
                window_started = time.perf_counter()
    if neftune is not None:
        neftune.remove()
    model.eval()
    runtime = time.perf_counter() - started
    result = TrainResult(
        steps=total_steps, epochs=_epoch(total_steps, args, batches_per_epoch), train_loss=last_loss,
        eval_loss_before=eval_before, eval_loss=eval_loss, train_tokens=tokens,
        padding_fraction=padded / tokens if tokens else 0.0, runtime_s=runtime, precision=precision,
        history=record.history,
    )
    record(
        event="end", steps=result.steps, epochs=round(result.epochs, 4), train_loss=result.train_loss,
        eval_loss_before=eval_before, eval_loss=eval_loss, train_tokens=tokens,
        padding_fraction=round(result.padding_fraction, 4), runtime_s=round(runtime, 2),
        eval_runtime_s=round(eval_time, 2), threads=tuner.choice, tokens_per_s=round(tokens / max(runtime - eval_time, 1e-9), 1),
    )
    return result


def evaluate_loss(model: torch.nn.Module, examples: Examples, batch_size: int, pad_id: int, dtype=None) -> float:
    """Token-weighted mean next-token loss of `model` on `examples`."""
    import torch

    device = training_device()
    was_training = model.training
    model.eval()
    total = count = 0.0
    with torch.no_grad():
        for batch in eval_batches(examples, batch_size, pad_id):
            with _autocast(device, dtype):
                total += float(summed_loss(model, batch))
            count += batch.num_targets
    model.train(was_training)
    return total / count if count else float("nan")


def _forward(model, batch: Batch, device, dtype) -> None:
    """One forward pass in eval mode (no dropout draws, so the seeded training is unchanged)."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad(), _autocast(device, dtype):
        summed_loss(model, batch)
    model.train(was_training)


def _evaluator(model, examples: Examples, args: TrainingArgs, pad_id: int, dtype):
    return lambda: evaluate_loss(model, examples, args.per_device_eval_batch_size, pad_id, dtype)


def _micro_batches(examples: Examples, args: TrainingArgs, pad_id: int) -> Iterator[Batch]:
    """Micro-batches epoch after epoch (each epoch reshuffled), for as long as steps need them."""
    epoch = 0
    while True:
        yield from epoch_batches(
            examples, args.per_device_train_batch_size, seed=args.order_seed + epoch,
            group_by_length=args.group_by_length, pad_id=pad_id,
        )
        epoch += 1


def _epoch(step: int, args: TrainingArgs, batches_per_epoch: int) -> float:
    return step * args.gradient_accumulation_steps / batches_per_epoch


def _eval_interval(args: TrainingArgs, has_eval: bool, steps_per_epoch: int) -> int | None:
    strategy = args.eval_strategy or ("steps" if has_eval else "no")
    if strategy == "no" or not has_eval:
        if strategy != "no":
            log.warning("eval_strategy is '%s' but there is no eval data; set eval_dataset_size or eval_data_config", strategy)
        return None
    if strategy == "epoch":
        return steps_per_epoch
    return args.eval_steps or args.logging_steps


def _optimizer(params, args: TrainingArgs):
    import torch

    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if args.optim in ADAMW_OPTIMIZERS:
        return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    return torch.optim.SGD(groups, lr=args.learning_rate)


def _scheduler(optimizer, args: TrainingArgs, warmup: int, total_steps: int):
    from transformers import get_scheduler

    try:
        return get_scheduler(
            args.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps,
            scheduler_specific_kwargs=args.lr_scheduler_kwargs or None,
        )
    except (TypeError, ValueError) as exc:
        raise OlivepressError(f"lr_scheduler_type '{args.lr_scheduler_type}' cannot be built: {exc}") from exc


def _autocast(device, dtype):
    import torch

    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _enable_checkpointing(model, args: TrainingArgs) -> None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kwargs = {"use_reentrant": False, **(args.gradient_checkpointing_kwargs or {})}
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if kwargs.get("use_reentrant"):
        base.enable_input_require_grads()


def _neftune_hook(model, alpha: float | None):
    """NEFTune: uniform noise of scale alpha / sqrt(length * hidden) on the input embeddings, in training."""
    if not alpha:
        return None
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model

    def add_noise(module, inputs, output):
        if not module.training:
            return output
        scale = alpha / math.sqrt(output.shape[-2] * output.shape[-1])
        return output + torch.zeros_like(output).uniform_(-scale, scale)

    return base.get_input_embeddings().register_forward_hook(add_noise)


class _Recorder:
    """Appends JSON lines to the training log (and keeps them, for the result)."""

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

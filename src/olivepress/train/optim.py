"""The optimizer and learning-rate schedule, from TrainingArguments names."""

from __future__ import annotations

from olivepress.errors import OlivepressError
from olivepress.train.args import ADAMW_OPTIMIZERS, TrainingArgs


def make_optimizer(params, args: TrainingArgs):
    """AdamW (or SGD) with weight decay on matrices only, as the HF Trainer does."""
    import torch

    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if args.optim in ADAMW_OPTIMIZERS:
        betas = (args.adam_beta1, args.adam_beta2)
        return torch.optim.AdamW(groups, lr=args.learning_rate, betas=betas, eps=args.adam_epsilon)
    return torch.optim.SGD(groups, lr=args.learning_rate)


def make_scheduler(optimizer, args: TrainingArgs, warmup: int, total_steps: int):
    from transformers import get_scheduler

    try:
        return get_scheduler(
            args.lr_scheduler_type,
            optimizer,
            num_warmup_steps=warmup,
            num_training_steps=total_steps,
            scheduler_specific_kwargs=args.lr_scheduler_kwargs or None,
        )
    except (TypeError, ValueError) as exc:
        raise OlivepressError(f"lr_scheduler_type '{args.lr_scheduler_type}' cannot be built: {exc}") from exc

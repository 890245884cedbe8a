"""How long a training run lasts, and when it logs and evaluates, from TrainingArguments names."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from olivepress.train.args import TrainingArgs

log = logging.getLogger("olivepress")


@dataclass(frozen=True)
class TrainingPlan:
    """How long training runs, and when it logs and evaluates."""

    total_steps: int
    steps_per_epoch: int
    batches_per_epoch: int
    warmup: int
    logging_steps: int
    eval_every: int | None
    accumulation: int

    @classmethod
    def of(cls, sequences: int, args: TrainingArgs, has_eval: bool) -> TrainingPlan:
        batches_per_epoch = math.ceil(sequences / args.per_device_train_batch_size)
        steps_per_epoch = max(1, math.ceil(batches_per_epoch / args.gradient_accumulation_steps))
        total = args.max_steps if args.max_steps > 0 else math.ceil(steps_per_epoch * args.num_train_epochs)
        return cls(
            total_steps=total,
            steps_per_epoch=steps_per_epoch,
            batches_per_epoch=batches_per_epoch,
            warmup=args.warmup_steps or math.ceil(args.warmup_ratio * total),
            logging_steps=args.logging_steps,
            eval_every=eval_interval(args, has_eval, steps_per_epoch),
            accumulation=args.gradient_accumulation_steps,
        )

    def logs_at(self, step: int) -> bool:
        return step % self.logging_steps == 0 or step == self.total_steps

    def evaluates_at(self, step: int) -> bool:
        return bool(self.eval_every) and (step % self.eval_every == 0 or step == self.total_steps)

    def epoch(self, step: int) -> float:
        return step * self.accumulation / self.batches_per_epoch


def eval_interval(args: TrainingArgs, has_eval: bool, steps_per_epoch: int) -> int | None:
    strategy = args.eval_strategy or ("steps" if has_eval else "no")
    if strategy == "no" or not has_eval:
        if strategy != "no":
            log.warning(
                "eval_strategy is '%s' but there is no eval data; set eval_dataset_size or eval_data_config",
                strategy,
            )
        return None
    if strategy == "epoch":
        return steps_per_epoch
    return args.eval_steps or args.logging_steps

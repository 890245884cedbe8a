"""A deterministic train / eval split (the seed's `eval_dataset_size`)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from olivepress.errors import OlivepressError

T = TypeVar("T")


def eval_count(total: int, eval_size: float | int) -> int:
    """How many of `total` items go to eval: a fraction in [0, 1) or a count."""
    if isinstance(eval_size, bool) or not isinstance(eval_size, (int, float)):
        raise OlivepressError(f"eval size must be a fraction like 0.3 or a count like 20, not {eval_size!r}")
    if isinstance(eval_size, float):
        if not 0.0 <= eval_size < 1.0:
            raise OlivepressError(
                f"eval size {eval_size} is not a fraction in [0, 1); give e.g. 0.3, or a whole count of items"
            )
        # At least one eval item when a non-zero fraction was asked for: an eval set of
        # zero would silently turn evaluation off.
        return max(1, round(total * eval_size)) if eval_size > 0 else 0
    if eval_size < 0:
        raise OlivepressError(f"eval size {eval_size} is negative; give 0 or more")
    return eval_size


def train_eval_split(
    items: Sequence[T], eval_size: float | int, seed: int
) -> tuple[Sequence[T], Sequence[T]]:
    """(train, eval) parts of `items`; the same items, size and seed always give the same parts.

    Which items go to eval is drawn with `seed`; both parts keep the items' original order.
    `items` may be a list (parts are lists) or a `datasets.Dataset` (parts are Datasets).
    """
    total = len(items)
    n_eval = eval_count(total, eval_size)
    if n_eval >= total:
        raise OlivepressError(
            f"an eval size of {eval_size} takes {n_eval} of the {total} items and leaves none to train on; "
            "lower the eval size or give more data"
        )
    chosen = set(random.Random(seed).sample(range(total), n_eval))
    train_idx = [i for i in range(total) if i not in chosen]
    eval_idx = sorted(chosen)
    if hasattr(items, "select"):  # datasets.Dataset: select keeps it Arrow-backed
        return items.select(train_idx), items.select(eval_idx)  # type: ignore[attr-defined]
    return [items[i] for i in train_idx], [items[i] for i in eval_idx]

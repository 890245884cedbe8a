"""Token sequences → micro-batches that spend (almost) no compute on padding.

With `group_by_length`, each epoch shuffles the sequences, cuts the shuffled order into
mega-batches of 50 micro-batches, sorts each mega-batch by length and cuts it into
micro-batches, then shuffles the micro-batches (the scheme of HF's LengthGroupedSampler).
Neighbours in a sorted run differ by a token or two, so padding to the longest sequence of a
micro-batch costs next to nothing, while the order stays random across the data set.
Joined corpora (`corpus_strategy: join`) are full-length chunks already: no padding at all.

Padding is right-sided, marked in `attention_mask`, and labelled IGNORE_INDEX, so it never
counts in the loss; `attention_mask` is None when a batch needs none (equal lengths), which
lets attention take its fastest unmasked path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from olivepress.data.tokenize import IGNORE_INDEX

if TYPE_CHECKING:
    import torch

MEGA_BATCH = 50


@dataclass
class Batch:
    input_ids: torch.Tensor  # [batch, length]
    labels: torch.Tensor  # [batch, length], IGNORE_INDEX where no loss is taken
    attention_mask: torch.Tensor | None  # None when no row is padded

    @property
    def num_tokens(self) -> int:
        """Tokens run through the model (padding included)."""
        return self.input_ids.numel()

    @property
    def num_targets(self) -> int:
        """Tokens whose next token is predicted and scored (labels shifted by one)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


def epoch_batches(
    examples: Sequence[dict[str, list[int]]],
    batch_size: int,
    *,
    seed: int,
    group_by_length: bool = True,
    shuffle: bool = True,
    pad_id: int = 0,
) -> list[Batch]:
    """One epoch of micro-batches; the same examples, batch size and seed give the same batches."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    order = (
        torch.randperm(len(examples), generator=generator).tolist() if shuffle else list(range(len(examples)))
    )
    lengths = [_length(examples[i]) for i in range(len(examples))]
    if group_by_length:
        span = MEGA_BATCH * batch_size
        order = [
            i
            for start in range(0, len(order), span)
            for i in sorted(order[start : start + span], key=lambda i: -lengths[i])
        ]
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle and group_by_length:
        groups = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
    return [collate([examples[i] for i in group], pad_id) for group in groups]


def eval_batches(examples: Sequence[dict[str, list[int]]], batch_size: int, pad_id: int = 0) -> list[Batch]:
    """Evaluation batches: sorted by length (least padding), fixed order."""
    order = sorted(range(len(examples)), key=lambda i: -_length(examples[i]))
    return [
        collate([examples[i] for i in order[s : s + batch_size]], pad_id)
        for s in range(0, len(order), batch_size)
    ]


def collate(rows: Sequence[dict[str, list[int]]], pad_id: int) -> Batch:
    import torch

    # A row padded by the tokenizer (pad_to_max_len) has an attention mask: trim to its true length.
    rows = [_trimmed(row) for row in rows]
    width = max(len(row["input_ids"]) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[index, :n] = torch.tensor(row["input_ids"])
        labels[index, :n] = torch.tensor(row["labels"])
        mask[index, :n] = 1
    padded = bool((mask == 0).any())
    return Batch(input_ids=ids, labels=labels, attention_mask=mask if padded else None)


def _length(example: dict[str, list[int]]) -> int:
    mask = example.get("attention_mask")
    return sum(mask) if mask is not None else len(example["input_ids"])


def _trimmed(row: dict[str, list[int]]) -> dict[str, list[int]]:
    n = _length(row)
    if n == len(row["input_ids"]):
        return row
    return {"input_ids": row["input_ids"][:n], "labels": row["labels"][:n]}


def row_slice(batch: Batch, part: int, parts: int) -> Batch | None:
    """Rows `part` of `parts` of a micro-batch (None when there are fewer rows than parts),
    cut back to its own longest row, so a slice carries no more padding than it needs."""
    import torch

    rows = torch.tensor_split(torch.arange(batch.input_ids.shape[0]), parts)[part]
    if len(rows) == 0:
        return None
    mask = batch.attention_mask[rows] if batch.attention_mask is not None else None
    width = int(mask.sum(dim=1).max()) if mask is not None else batch.input_ids.shape[1]
    mask = mask[:, :width] if mask is not None else None
    if mask is not None and bool(mask.all()):
        mask = None
    ids, labels = batch.input_ids[rows, :width], batch.labels[rows, :width]
    return Batch(input_ids=ids, labels=labels, attention_mask=mask)

"""Texts → token sequences for training and evaluation.

Two strategies, as in the seed's `corpus_strategy`:

- `join`: every sample is followed by EOS, all are concatenated into one stream, and the
  stream is cut into `source_max_len` chunks. No token is wasted on padding, and samples may
  straddle a chunk boundary (fine for causal LM training, where EOS marks where one ends).
  A short last chunk is kept unless it is under 1/8 of `source_max_len`: a tail that small
  adds little signal but would make the last batch mostly padding. When the whole corpus
  fits in less than one chunk, that one short chunk is kept, so small data still trains.
- `line-by-line`: one sequence per sample, EOS appended (so the model learns to stop), cut at
  `source_max_len`.

`pad_to_max_len` pads every sequence to `source_max_len`; otherwise sequences keep their own
length and the trainer's collator pads each batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from olivepress.data.config import PreProcessDataConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Below this fraction of a chunk, the last piece of a joined corpus is dropped (see above).
MIN_TAIL_FRACTION = 1 / 8
# Texts per call into the (Rust) fast tokenizer: big enough to batch, small enough that a
# large corpus does not hold every encoding object in memory at once.
_BATCH = 1024
IGNORE_INDEX = -100  # labels at padding: ignored by torch's cross-entropy


def encode_texts(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Token ids of each text (with the tokenizer's own special tokens, e.g. BOS), in batches."""
    ids: list[list[int]] = []
    for start in range(0, len(texts), _BATCH):
        batch = list(texts[start : start + _BATCH])
        # verbose=False: texts longer than the model's context are expected here (they are
        # cut later), so the "sequence length is longer than" warning would only be noise.
        ids.extend(tokenizer(batch, add_special_tokens=True, verbose=False)["input_ids"])
    return ids


def token_stream(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """All texts as one stream of ids, each followed by EOS (unless it already ends with it)."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in encode_texts(texts, tokenizer):
        stream.extend(_with_eos(ids, eos))
    return stream


def tokenize_corpus(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, pre: PreProcessDataConfig
) -> list[list[int]]:
    """Token sequences for `texts` by `pre.corpus_strategy` (see module notes)."""
    sequences = _unpadded(texts, tokenizer, pre)
    if pre.pad_to_max_len:
        pad = _pad_id(tokenizer)
        sequences = [seq + [pad] * (pre.source_max_len - len(seq)) for seq in sequences]
    return sequences


def training_examples(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, pre: PreProcessDataConfig
) -> list[dict[str, list[int]]]:
    """`input_ids`, `labels` (and `attention_mask` when `pre.use_attention_mask`) per sequence.

    Padding is marked from the true lengths, not by comparing ids: many tokenizers pad with
    EOS, and the EOS that ends a sample must stay a label.
    """
    sequences = _unpadded(texts, tokenizer, pre)
    pad = _pad_id(tokenizer)
    examples = []
    for seq in sequences:
        fill = pre.source_max_len - len(seq) if pre.pad_to_max_len else 0
        example = {"input_ids": seq + [pad] * fill, "labels": seq + [IGNORE_INDEX] * fill}
        if pre.use_attention_mask:
            example["attention_mask"] = [1] * len(seq) + [0] * fill
        examples.append(example)
    return examples


def _unpadded(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, pre: PreProcessDataConfig
) -> list[list[int]]:
    size = pre.source_max_len
    if pre.corpus_strategy == "join":
        return chunk_stream(token_stream(texts, tokenizer), size)
    eos = tokenizer.eos_token_id
    return [_with_eos(ids, eos)[:size] for ids in encode_texts(texts, tokenizer)]


def chunk_stream(stream: Sequence[int], size: int) -> list[list[int]]:
    """`stream` cut into `size`-token chunks; a short tail is kept or dropped as described above."""
    chunks = [list(stream[i : i + size]) for i in range(0, len(stream), size)]
    if len(chunks) > 1 and len(chunks[-1]) < size * MIN_TAIL_FRACTION:
        chunks.pop()
    return chunks


def _with_eos(ids: list[int], eos: int | None) -> list[int]:
    if eos is None or (ids and ids[-1] == eos):
        return ids
    return [*ids, eos]


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    # Llama-family tokenizers often have no pad token; EOS is the usual stand-in, and the
    # attention mask / IGNORE_INDEX labels keep it from being learned as content.
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return 0 if pad is None else pad

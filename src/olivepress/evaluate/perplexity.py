"""Perplexity of a causal LM on a text, with a sliding window.

The text is tokenized once; windows of `seq_len` tokens move by `stride`, and each window
scores only the tokens the previous one did not, so every token after the first is scored
exactly once, with up to seq_len - stride tokens of context before it:

    ppl = exp( Σ -log p(token | context) / number of scored tokens )
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def perplexity(
    model: PreTrainedModel | HfModel,
    tokenizer: PreTrainedTokenizerBase | None,
    text: str,
    seq_len: int = 512,
    stride: int | None = None,
) -> float:
    """Perplexity of `model` on `text` (float32, no grad); a handle is loaded first.

    `stride` defaults to seq_len // 2, so every scored token but the first window's has at
    least half a window of context.
    """
    import torch

    from olivepress.models.loading import load_causal_lm, load_tokenizer

    if isinstance(model, HfModel):
        tokenizer = tokenizer or load_tokenizer(model)
        model = load_causal_lm(model, dtype=torch.float32)
    if tokenizer is None:
        raise OlivepressError("perplexity needs the model's tokenizer when given a loaded model")
    stride = stride or max(seq_len // 2, 1)
    if not 0 < stride <= seq_len:
        raise OlivepressError(f"stride={stride} must be between 1 and seq_len={seq_len}")

    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    if ids.numel() < 2:
        raise OlivepressError("the text is too short for perplexity: it needs at least two tokens")

    model.eval()
    nll, scored = 0.0, 0
    with torch.no_grad():
        for begin, end, new in windows(ids.numel(), seq_len, stride):
            window = ids[begin:end].unsqueeze(0)
            logits = model(input_ids=window, use_cache=False).logits[0, :-1].float()
            targets = window[0, 1:]
            losses = torch.nn.functional.cross_entropy(logits[-new:], targets[-new:], reduction="sum")
            nll += losses.item()
            scored += new
    return math.exp(nll / scored)


def windows(length: int, seq_len: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """(begin, end, new) of each window over `length` tokens: `new` is how many of its last
    tokens to score (those after the previous window's end, its last token included)."""
    prev_end = 0
    for begin in range(0, length - 1, stride):
        end = min(begin + seq_len, length)
        yield begin, end, end - max(prev_end, begin + 1)
        prev_end = end
        if end == length:
            break


def perplexity_of_logits(
    logits_of: Callable[[list[int]], np.ndarray],
    ids: list[int],
    seq_len: int = 512,
    stride: int | None = None,
) -> float:
    """Perplexity from any runtime: `logits_of(window ids)` returns [len, vocab] next-token logits
    (an ONNX Runtime session, ORT GenAI's decoder, PyTorch); same windows as `perplexity`."""
    import numpy as np

    stride = stride or max(seq_len // 2, 1)
    if not 0 < stride <= seq_len:
        raise OlivepressError(f"stride={stride} must be between 1 and seq_len={seq_len}")
    if len(ids) < 2:
        raise OlivepressError("the text is too short for perplexity: it needs at least two tokens")
    nll, scored = 0.0, 0
    for begin, end, new in windows(len(ids), seq_len, stride):
        window = ids[begin:end]
        logits = np.asarray(logits_of(window), dtype=np.float64)[:-1][-new:]
        targets = np.asarray(window[1:][-new:])
        top = logits.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(axis=-1)) + top[:, 0]
        nll += float((log_z - logits[np.arange(new), targets]).sum())
        scored += new
    return math.exp(nll / scored)

"""Calibration samples for the quantizers (AWQ, GPTQ): `[n, seq_len]` token windows.

The samples are windows cut from one token stream: the user's data (rendered and tokenized
as for training, samples separated by EOS) or, with no data config, the shipped calibration
prose. When the stream holds `num_samples` disjoint windows, disjoint ones are drawn, so no
text is counted twice; otherwise windows start at random offsets and overlap, which still
gives the quantizer the right activation statistics, only from less distinct text.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from olivepress.data.config import DataConfig
from olivepress.data.shipped import CALIBRATION_TEXT, heldout_names, heldout_text, shipped_text
from olivepress.errors import OlivepressError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

# heldout_* are re-exported so perplexity code finds shipped text next to calibration text.
__all__ = ["calibration_samples", "calibration_stream", "heldout_names", "heldout_text"]

log = logging.getLogger(__name__)


def calibration_samples(
    tokenizer: PreTrainedTokenizerBase,
    data_config: DataConfig | None = None,
    num_samples: int = 128,
    seq_len: int = 512,
    seed: int = 0,
) -> torch.LongTensor:
    """`num_samples` windows of `seq_len` tokens, the same for the same inputs and seed."""
    import torch

    if num_samples < 1:
        raise OlivepressError(f"num_samples is {num_samples}; calibration needs at least 1 sample")
    if seq_len < 1:
        raise OlivepressError(f"seq_len is {seq_len}; calibration samples need at least 1 token")
    stream, source = calibration_stream(tokenizer, data_config)
    total = len(stream)
    if total < seq_len:
        raise OlivepressError(
            f"{source} has {total} tokens, fewer than one calibration sample of seq_len={seq_len}; "
            f"lower seq_len to {total} or less, or give more text"
        )

    generator = torch.Generator().manual_seed(seed)
    slots = total // seq_len
    if slots >= num_samples:
        starts = torch.randperm(slots, generator=generator)[:num_samples] * seq_len
    else:
        log.info(
            "%s has %d tokens, enough for %d disjoint windows of %d; drawing %d overlapping ones",
            source,
            total,
            slots,
            seq_len,
            num_samples,
        )
        starts = torch.randint(0, total - seq_len + 1, (num_samples,), generator=generator)
    tokens = torch.tensor(stream, dtype=torch.long)
    return tokens[starts[:, None] + torch.arange(seq_len)]


def calibration_stream(
    tokenizer: PreTrainedTokenizerBase, data_config: DataConfig | None = None
) -> tuple[list[int], str]:
    """The token stream calibration windows are cut from, and a name for it in messages."""
    # Imported here: loading pulls in `datasets`, which a quantizer on shipped text never needs.
    from olivepress.data.tokenize import encode_texts, token_stream

    if data_config is not None and data_config.load_dataset_config.names_wikitext:
        # Olive's recipes name the hub's wikitext for calibration; it is not on this machine.
        log.warning(
            "data config '%s' names the hub's %s, which olivepress does not download; calibrating on the "
            "shipped calibration text (English prose) instead",
            data_config.name,
            data_config.load_dataset_config.data_name,
        )
        data_config = None
    if data_config is None:
        # One text, not one per paragraph: an EOS after every paragraph is not natural prose.
        return encode_texts([shipped_text(CALIBRATION_TEXT)], tokenizer)[0], "the shipped calibration text"

    from olivepress.data.loading import load_records
    from olivepress.data.templates import render_texts

    records = load_records(data_config)
    texts = render_texts(records, data_config.pre_process_data_config, tokenizer)
    return token_stream(texts, tokenizer), f"data config '{data_config.name}'"

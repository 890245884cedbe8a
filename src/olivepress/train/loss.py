"""Summed next-token loss over the labelled tokens of a batch.

For decoder models whose head is a plain `lm_head` Linear (Llama, Mistral, Qwen2/3, Phi-3, ...:
`plain_head` in models/families.py) the head runs only on positions that have a label: no
logits for padding or for the last position of each row. The vocabulary projection is a
fifth of a small model's compute (49152 x 576 in SmolLM2), so this skips real work, and it
never builds the full [batch, length, vocab] logits tensor. Other models go through their own forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from olivepress.data.tokenize import IGNORE_INDEX
from olivepress.models.families import find_family

if TYPE_CHECKING:
    import torch

    from olivepress.train.micro_batches import Batch


def summed_loss(model: torch.nn.Module, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy summed over every labelled next-token target of `batch`."""
    import torch.nn.functional as F

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = causal_lm.device
    input_ids = batch.input_ids.to(device)
    mask = batch.attention_mask.to(device) if batch.attention_mask is not None else None
    targets = batch.labels[:, 1:].to(device)
    keep = targets != IGNORE_INDEX
    family = find_family(causal_lm.config)
    if family is not None and family.plain_head:
        hidden = causal_lm.get_decoder()(
            input_ids=input_ids, attention_mask=mask, use_cache=False
        ).last_hidden_state
        logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
    else:
        logits = causal_lm(input_ids=input_ids, attention_mask=mask, use_cache=False).logits[:, :-1][keep]
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum", label_smoothing=label_smoothing)

"""Summed next-token loss over the labelled tokens of a batch.

For the decoder families olivepress knows (models/families.py), whose *ForCausalLM forward is
`lm_head(decoder(x))`, soft-capped as `cap * tanh(logits / cap)` where the config sets
`final_logit_softcapping` (Gemma-2), the head runs only on positions that have a label: no
logits for padding or for the last position of each row. The vocabulary projection is a
fifth of a small model's compute (49152 x 576 in SmolLM2), so this skips real work, and it
never builds the full [batch, length, vocab] logits tensor (Gemma-3's 262,144-token vocabulary
makes that the bulk of training memory). Other models go through their own forward.
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
    import torch
    import torch.nn.functional as F

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = causal_lm.device
    input_ids = batch.input_ids.to(device)
    mask = batch.attention_mask.to(device) if batch.attention_mask is not None else None
    targets = batch.labels[:, 1:].to(device)
    keep = targets != IGNORE_INDEX
    family = find_family(causal_lm.config)
    if family is not None:
        hidden = causal_lm.get_decoder()(
            input_ids=input_ids, attention_mask=mask, use_cache=False
        ).last_hidden_state
        logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
        cap = getattr(causal_lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
    else:
        logits = causal_lm(input_ids=input_ids, attention_mask=mask, use_cache=False).logits[:, :-1][keep]
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum", label_smoothing=label_smoothing)

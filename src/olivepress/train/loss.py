"""Summed next-token loss over the labelled tokens of a batch.

For decoder models whose head is a plain `lm_head` Linear (Llama, Mistral, Qwen2/3, Phi-3, ...)
the head runs only on positions that have a label: no logits for padding or for the last
position of each row. The vocabulary projection is a fifth of a small model's compute
(49152 x 576 in SmolLM2), so this skips real work, and it never builds the full
[batch, length, vocab] logits tensor. Other models go through their own forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from olivepress.data.tokenize import IGNORE_INDEX

if TYPE_CHECKING:
    import torch

    from olivepress.train.micro_batches import Batch

# model_type values whose *ForCausalLM forward is `lm_head(decoder(...))` and nothing more
# (no logit scaling or soft-capping), so the head may be applied to a subset of positions.
PLAIN_HEAD_MODELS = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo", "olmo2", "smollm3", "starcoder2", "stablelm"}
)


def summed_loss(model: torch.nn.Module, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy summed over every labelled next-token target of `batch`."""
    import torch.nn.functional as F

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = causal_lm.device
    input_ids = batch.input_ids.to(device)
    mask = batch.attention_mask.to(device) if batch.attention_mask is not None else None
    targets = batch.labels[:, 1:].to(device)
    keep = targets != IGNORE_INDEX
    if getattr(causal_lm.config, "model_type", None) in PLAIN_HEAD_MODELS:
        hidden = causal_lm.get_decoder()(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
        logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
    else:
        logits = causal_lm(input_ids=input_ids, attention_mask=mask, use_cache=False).logits[:, :-1][keep]
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum", label_smoothing=label_smoothing)

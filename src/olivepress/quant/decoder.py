"""Where a decoder-only causal LM keeps the parts the quantizers walk: its decoder layers and
the norm before lm_head."""

from __future__ import annotations

from typing import TYPE_CHECKING

from olivepress.errors import OlivepressError

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel


def decoder_layers(model: PreTrainedModel) -> tuple[nn.ModuleList, str]:
    """The decoder layers and their name prefix ('model.layers' for Llama, Phi-3, Qwen, ...)."""
    from torch import nn

    n_layers = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers and name.count(".") <= 2:
            return module, name
    raise OlivepressError(
        f"cannot find the decoder layers of this {type(model).__name__}; olivepress quantizes decoder-only "
        "transformers whose layers sit in one ModuleList (Llama, Mistral, Phi-3, Qwen, ...)"
    )


def final_norm(model: PreTrainedModel) -> nn.Module:
    """The norm whose output feeds lm_head."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    for attr in ("norm", "final_layernorm", "ln_f"):
        if hasattr(base, attr):
            return getattr(base, attr)
    raise OlivepressError(
        f"cannot find the final norm of this {type(model).__name__}, so lm_head cannot be calibrated"
    )

"""Changes to the model for training: gradient checkpointing and NEFTune's embedding noise."""

from __future__ import annotations

import math

from olivepress.train.args import TrainingArgs


def enable_checkpointing(model, args: TrainingArgs) -> bool:
    """Gradient checkpointing per decoder layer; False where the model has none (it then trains
    holding every layer's activations, as without the option)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        return False
    kwargs = {"use_reentrant": False, **(args.gradient_checkpointing_kwargs or {})}
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if kwargs.get("use_reentrant"):
        base.enable_input_require_grads()
    return True


def neftune_hook(model, alpha: float | None):
    """NEFTune: uniform noise of scale alpha / sqrt(length * hidden) on the input embeddings, in training."""
    if not alpha:
        return None
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model

    def add_noise(module, inputs, output):
        if not module.training:
            return output
        scale = alpha / math.sqrt(output.shape[-2] * output.shape[-1])
        return output + torch.zeros_like(output).uniform_(-scale, scale)

    return base.get_input_embeddings().register_forward_hook(add_noise)

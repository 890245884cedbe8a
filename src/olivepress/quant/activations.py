"""Capturing activations: what decoder layer 0 receives for the calibration tokens, and, as a
layer runs on its inputs, what each of its Linear layers receives."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from olivepress.quant.decoder import decoder_layers

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedModel


class _Stop(Exception):
    pass


@dataclass
class LayerInputs:
    """The calibration batches at the input of one decoder layer: hidden states and the
    keyword arguments (rotary embeddings, mask) the model passed to it."""

    hidden: list[torch.Tensor]
    kwargs: list[dict[str, Any]]

    @property
    def num_tokens(self) -> int:
        return sum(h.shape[0] * h.shape[1] for h in self.hidden)

    def run(
        self, layer: nn.Module, capture: list[str] | None = None
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """The layer's outputs for every batch and, for each named submodule, its inputs
        flattened to [tokens, features]. Submodules fed the very same tensor (q/k/v after
        one norm) get the same captured tensor object, so callers can share work by id()."""
        import torch

        captured: dict[str, list[torch.Tensor]] = {name: [] for name in capture or []}
        same_as: dict[str, str] = {}
        seen: dict[tuple, str] = {}  # (data_ptr, shape) of this batch's inputs -> first module

        def hook(_module: nn.Module, args: tuple, _out: torch.Tensor, name: str) -> None:
            x = args[0]
            key = (x.data_ptr(), tuple(x.shape))
            if key in seen and seen[key] != name:
                same_as[name] = seen[key]
                return
            seen[key] = name
            captured[name].append(x.reshape(-1, x.shape[-1]).float())

        modules = dict(layer.named_modules())
        handles = [
            modules[name].register_forward_hook(lambda m, a, o, name=name: hook(m, a, o, name))
            for name in captured
        ]
        outputs = []
        try:
            with torch.no_grad():
                for hidden, kwargs in zip(self.hidden, self.kwargs, strict=True):
                    seen.clear()
                    out = layer(hidden, **kwargs)
                    outputs.append(out[0] if isinstance(out, tuple) else out)
        finally:
            for handle in handles:
                handle.remove()
        xs = {name: torch.cat(chunks) for name, chunks in captured.items() if name not in same_as}
        xs.update({name: xs[first] for name, first in same_as.items()})
        return outputs, xs


def first_layer_inputs(model: PreTrainedModel, tokens: torch.Tensor, batch_size: int) -> LayerInputs:
    """Run the calibration tokens up to decoder layer 0 and keep what it receives."""
    import torch

    layers, _ = decoder_layers(model)
    inputs = LayerInputs([], [])

    def grab(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs.pop("hidden_states")
        inputs.hidden.append(hidden.detach())
        inputs.kwargs.append({k: v for k, v in kwargs.items() if k != "hidden_states"})
        raise _Stop

    handle = layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in tokens.split(batch_size):
                with contextlib.suppress(_Stop):
                    model(input_ids=batch, use_cache=False)
    finally:
        handle.remove()
    return inputs

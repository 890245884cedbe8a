"""Calibration: the token windows, and the layer-by-layer walk that quantizes a model on them.

The walk keeps memory near one decoder layer's activations: the calibration tokens run
through the embeddings once, up to decoder layer 0, and from there each layer is quantized
and then run (quantized) on its inputs to give the next layer's inputs. What an algorithm
does to one layer is its `LayerQuantizer`; lm_head, when asked for, gets the final norm's
outputs and the algorithm's `HeadQuantizer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from olivepress.errors import OlivepressError
from olivepress.quant.activations import LayerInputs, first_layer_inputs
from olivepress.quant.decoder import decoder_layers, final_norm

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedModel

    from olivepress.data.config import DataConfig
    from olivepress.quant.grid import Grid, QuantizedWeight
    from olivepress.quant.plan import QuantPlan

# Quantize the named Linear layers of one decoder layer in place (their weights become the
# dequantised grid) and return their quantized weights.
LayerQuantizer = Callable[["nn.Module", LayerInputs, "dict[str, Grid]"], "dict[str, QuantizedWeight]"]
# The same for lm_head, given its inputs [tokens, hidden].
HeadQuantizer = Callable[["PreTrainedModel", "torch.Tensor", "Grid"], "QuantizedWeight"]


def calibration_tokens(
    tokenizer: Any, data_config: DataConfig | None, *, num_samples: int, seq_len: int, seed: int
) -> torch.Tensor:
    """`num_samples` windows of `seq_len` tokens [samples, seq_len] from the data (None: the
    shipped calibration text)."""
    from olivepress.data.calibration import calibration_samples

    if num_samples < 1:
        raise OlivepressError(
            f"num_calib_samples is {num_samples}; this quantizer needs calibration samples, "
            "give at least 1 (16 to 64 is usual)"
        )
    tokens = calibration_samples(tokenizer, data_config, num_samples=num_samples, seq_len=seq_len, seed=seed)
    if tokens.numel() == 0:
        raise OlivepressError(
            "the calibration data gave no tokens; check data_config or use the shipped text"
        )
    return tokens


def quantize_layer_by_layer(
    model: PreTrainedModel,
    tokens: torch.Tensor,
    plan: QuantPlan,
    quantize_layer: LayerQuantizer,
    quantize_head: HeadQuantizer,
    *,
    batch_size: int,
    log: Any,
    name: str,
) -> dict[str, QuantizedWeight]:
    """Quantize every Linear in `plan` with the algorithm's steps; the quantized weights by
    module name. The model's weights become the dequantised grid as the walk goes."""
    import torch

    layers, prefix = decoder_layers(model)
    start = time.perf_counter()
    inputs = first_layer_inputs(model, tokens, batch_size)
    quantized: dict[str, QuantizedWeight] = {}
    for i, layer in enumerate(layers):
        layer_start = time.perf_counter()
        here = f"{prefix}.{i}."
        grids = {n.removeprefix(here): g for n, g in plan.grids.items() if n.startswith(here)}
        if grids:
            done = quantize_layer(layer, inputs, grids)
            quantized.update({here + n: q for n, q in done.items()})
        inputs.hidden, _ = inputs.run(layer)
        log.info(
            "%s: layer %d/%d quantized in %.1f s", name, i + 1, len(layers), time.perf_counter() - layer_start
        )
    if "lm_head" in plan.grids:
        norm = final_norm(model)
        with torch.no_grad():
            x = torch.cat([norm(h).reshape(-1, h.shape[-1]).float() for h in inputs.hidden])
        quantized["lm_head"] = quantize_head(model, x, plan.grids["lm_head"])
        log.info("%s: lm_head quantized", name)
    log.info("%s: %d layers in %.1f s", name, len(layers), time.perf_counter() - start)
    return quantized

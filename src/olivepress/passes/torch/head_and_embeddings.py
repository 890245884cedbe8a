"""RTN of lm_head and the token embeddings, on a float model or on a checkpoint whose decoder
layers another quantizer (GPTQ, AWQ) has already quantized (Olive's recipes run `gptq`, then
`rtn` with `lm_head` and `embeds` at 8 bits).

What the checkpoint holds:

- lm_head: packed (GPTQ layout; its bits / group size in `dynamic`), so ModelBuilder writes it
  as MatMulNBits with those integers.
- embeddings: the GPTQ layout has no quantized Embedding, so their float weights are written
  rounded to the grid, and `quantization_config.meta.embeds` records the grid. ModelBuilder
  turns that into a GatherBlockQuantized node; where the model ties lm_head to the embeddings
  and both have the same grid, the embeddings are lm_head's dequantised weights, and
  GraphSurgeries' TieWordEmbeddings makes the lookup read lm_head's integers (one copy).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel
from olivepress.quant.grid import Grid
from olivepress.quant.options import QuantOptions, find_override

if TYPE_CHECKING:
    import torch

    from olivepress.quant.grid import QuantizedWeight

EMBEDDING_NAMES = ("model.embed_tokens", "transformer.wte", "model.decoder.embed_tokens")


def grid_for(config: QuantOptions, name: str, in_features: int, module_names: set[str]) -> Grid | None:
    """The grid `config` gives module `name` (None: left float), group size fitted to in_features."""
    from olivepress.quant.layout import largest_fitting_group

    override = find_override(config.overrides, name, module_names)
    if override.skip:
        return None
    bits = override.bits or config.bits
    group_size = override.group_size or config.group_size
    sym = config.symmetric if override.sym is None else override.sym
    if group_size != -1 and in_features % group_size:
        smaller = largest_fitting_group(in_features, group_size)
        if config.ragged_groups != "smaller_group" or smaller is None:
            raise OlivepressError(
                f"{name} has {in_features} columns, not a multiple of group_size={group_size}; "
                "use a group size that divides it"
            )
        group_size = smaller
    return Grid(bits=bits, group_size=group_size, sym=sym)


def embeddings_meta(grid: Grid, tied_to_lm_head: bool) -> dict[str, Any]:
    return {
        "bits": grid.bits,
        "group_size": grid.group_size,
        "sym": grid.sym,
        "tied_to_lm_head": tied_to_lm_head,
    }


def quantize_embeddings(
    embedding: torch.Tensor,
    grid: Grid,
    lm_head: QuantizedWeight | None,
    lm_head_grid: Grid | None,
    tied: bool,
) -> tuple[torch.Tensor, bool]:
    """The embedding weights rounded to `grid`, and whether they are exactly lm_head's (tied
    models whose lm_head has the same grid keep one set of integers)."""
    from olivepress.quant.grid import quantize_weight

    if tied and lm_head is not None and lm_head_grid == grid:
        return lm_head.dequantize(), True
    return quantize_weight(embedding.float(), grid).dequantize(), False


def quantize_remaining(model: HfModel, config: QuantOptions, out_dir: Path, log: logging.Logger) -> HfModel:
    """RTN of lm_head (and the embeddings) of an already quantized checkpoint; the layers that are
    quantized keep their integers."""

    from olivepress import __version__
    from olivepress.quant import checkpoint
    from olivepress.quant import qconfig as qconfig_module
    from olivepress.quant.grid import quantize_weight

    if not (config.include_lm_head or config.embeds):
        raise OlivepressError(
            f"{model.path} is already quantized ('{model.quantization_method()}'); RTN on it quantizes "
            "what is "
            "left: set lm_head and/or embeds, or give RTN the float model"
        )
    quantized, tensors, qconfig = checkpoint.read_quantized(model.folder)
    source_config = json.loads((model.folder / "config.json").read_text())
    tied = bool(source_config.get("tie_word_embeddings", False))
    embed_key = next((f"{n}.weight" for n in EMBEDDING_NAMES if f"{n}.weight" in tensors), None)
    if embed_key is None:
        raise OlivepressError(
            f"cannot find the token embeddings in {model.path} (looked for {', '.join(EMBEDDING_NAMES)})"
        )
    names = set(quantized) | {k.rsplit(".", 1)[0] for k in tensors} | {"lm_head"}
    float_dtype = tensors[embed_key].dtype
    meta = dict(qconfig.get("meta") or {})
    head_q, head_grid = quantized.get("lm_head"), None
    if config.include_lm_head and head_q is None:
        weight = tensors.pop("lm_head.weight", None)
        if weight is None:
            if not tied:
                raise OlivepressError(
                    f"{model.path} has no lm_head.weight and does not tie it to the embeddings"
                )
            weight = tensors[embed_key]
        head_grid = grid_for(config, "lm_head", weight.shape[1], names)
        if head_grid is not None:
            head_q = quantize_weight(weight.float(), head_grid)
            quantized["lm_head"] = head_q
            log.info(
                "RTN: lm_head %d-bit g%d on the quantized checkpoint", head_grid.bits, head_grid.group_size
            )
    if config.embeds:
        embed_name = embed_key.removesuffix(".weight")
        grid = grid_for(config, embed_name, tensors[embed_key].shape[1], names)
        if grid is not None:
            values, shared = quantize_embeddings(tensors[embed_key], grid, head_q, head_grid, tied)
            tensors[embed_key] = values.to(float_dtype)
            meta["embeds"] = embeddings_meta(grid, shared)
            log.info(
                "RTN: embeddings %d-bit g%d%s",
                grid.bits,
                grid.group_size,
                " (lm_head's integers)" if shared else "",
            )
    dynamic = dict(qconfig.get("dynamic") or {})
    bits, group_size = int(qconfig.get("bits", 4)), int(qconfig.get("group_size", 128))
    sym = bool(qconfig.get("sym", not qconfig.get("zero_point", True)))
    if head_grid is not None and (head_grid.bits, head_grid.group_size, head_grid.sym) != (
        bits,
        group_size,
        sym,
    ):
        dynamic[r"+:lm_head\b"] = {
            "bits": head_grid.bits,
            "group_size": head_grid.group_size,
            "sym": head_grid.sym,
        }
    meta["rtn_after"] = qconfig.get("meta", {}).get("algorithm", qconfig.get("quant_method"))
    meta["quantizer"] = f"olivepress {__version__}"
    new_qconfig = qconfig_module.gptq_config(
        bits=bits,
        group_size=group_size,
        sym=sym,
        desc_act=bool(qconfig.get("desc_act", False)),
        damp_percent=float(qconfig.get("damp_percent", 0.0)),
        dynamic=dynamic,
        lm_head="lm_head" in quantized,
        meta=meta,
    )
    _write(quantized, tensors, model.folder, out_dir, new_qconfig, source_config)
    return HfModel(
        path=str(out_dir),
        task=model.task,
        adapter_path=model.adapter_path,
        load_kwargs={k: v for k, v in model.load_kwargs.items() if k == "trust_remote_code"},
    )


def default_head_step(model: HfModel, device: str, precision: str) -> dict[str, Any] | None:
    """The RTN pass auto-opt runs before ModelBuilder on a CPU int4 build of a quantized checkpoint
    whose lm_head is float: lm_head and the embeddings in 8 bits on olivepress's grid (tied where
    the model ties them), instead of a float embedding table and lm_head. None where it does not
    apply (float input: the builder quantizes lm_head itself; an adapter on lm_head or the
    embeddings; GPUs, other precisions)."""
    if device != "cpu" or precision != "int4" or model.quantization_method() not in ("gptq", "awq"):
        return None
    if (model.quantization_config() or {}).get("lm_head"):
        return None
    if model.adapter_path:
        from olivepress.runtime.adapters import peft_adapter_config

        targets = peft_adapter_config(Path(model.adapter_path)).get("target_modules") or []
        saved = peft_adapter_config(Path(model.adapter_path)).get("modules_to_save") or []
        text = " ".join(targets if isinstance(targets, list) else [targets]) + " " + " ".join(saved)
        if "lm_head" in text or "embed" in text:
            return None
    # Explicit overrides: a SelectiveMixedPrecision default (e.g. 4 bits) must not lower them.
    eight_bits = {"bits": 8}
    return {
        "type": "RTN",
        "lm_head": True,
        "embeds": True,
        "bits": 8,
        "overrides": {"lm_head": eight_bits, "re:.*(embed_tokens|wte)": eight_bits},
    }


def _write(quantized: dict, tensors: dict, source: Path, out_dir: Path, qconfig: dict, config: dict) -> None:
    from olivepress.quant import checkpoint
    from olivepress.quant.packing import pack_gptq

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, q in quantized.items():
        problem = checkpoint.layout_problem("gptq", name, q, q.group_size)
        if problem:
            raise OlivepressError(f"cannot write the GPTQ layout: {problem}")
        for suffix, tensor in pack_gptq(q).items():
            tensors[f"{name}.{suffix}"] = tensor
    checkpoint._write_safetensors(tensors, out_dir)
    config = dict(config)
    config["quantization_config"] = qconfig
    if "lm_head" in quantized:
        config["tie_word_embeddings"] = False  # lm_head has its own (quantized) weights now
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    checkpoint.copy_side_files(source, out_dir)

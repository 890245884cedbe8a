"""GraphSurgeries: named rewrites of an ONNX model, as Olive's pass of that name takes them:

    {"type": "GraphSurgeries", "surgeries": [{"surgeon": "TieWordEmbeddings"}]}

Surgeons here:

- TieWordEmbeddings: where the token-embedding lookup holds the same weights as the LM head,
  the lookup reads the head's weights, so the model holds one copy. A quantized head
  (MatMulNBits) becomes the data of a GatherBlockQuantized lookup; a lookup that is already
  GatherBlockQuantized on integers equal to the head's is pointed at the head's. Weights that
  differ are left alone, with a warning (the model does not tie them).
- QuantizeEmbeddingInt8: the float lookup becomes GatherBlockQuantized on 8-bit weights
  (RTN, per-row blocks of `block_size`, 128 by default).

Olive's other surgeons (listed in docs/olive-compat.md) are refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from olivepress.errors import OlivepressError, did_you_mean
from olivepress.models.handles import OnnxModel
from olivepress.passes.base import PassContext
from olivepress.passes.onnx.model_files import OnnxOutputConfig, load_model, onnx_file, write_model

VERSION = 1
ACCEPTS = ("onnx",)

SURGEONS = ("TieWordEmbeddings", "QuantizeEmbeddingInt8")


class Surgery(BaseModel):
    model_config = ConfigDict(extra="allow")

    surgeon: str

    @field_validator("surgeon")
    @classmethod
    def _known(cls, name: str) -> str:
        if name in SURGEONS:
            return name
        from olivepress.workflow.olive_compat import olive_surface

        if name in olive_surface()["surgeons"]:
            raise OlivepressError(
                f"Olive's graph surgeon '{name}' is not available in olivepress; it has {', '.join(SURGEONS)}"
            )
        raise OlivepressError(
            f"unknown graph surgeon '{name}'{did_you_mean(name, SURGEONS)}; known: {', '.join(SURGEONS)}"
        )


class Config(OnnxOutputConfig):
    surgeries: list[Surgery] = Field(
        ..., min_length=1, description="Surgeries in order: {surgeon: Name, ...options}."
    )
    remove_duplicate_initializers: bool = Field(
        False, description="Olive's option; the surgeons here leave no duplicate initializers behind."
    )


def run(model: OnnxModel, config: Config, out_dir: Path, ctx: PassContext) -> OnnxModel:
    source = _model_path(model)
    proto = load_model(source)
    for surgery in config.surgeries:
        options = {k: v for k, v in (surgery.model_extra or {}).items()}
        SURGERY_FUNCTIONS[surgery.surgeon](proto, ctx, **options)
    return write_model(proto, out_dir, config, source=model, file_name=source.name)


def _model_path(model: OnnxModel) -> Path:
    if model.is_genai:
        from olivepress.runtime.adapters import model_file

        return model_file(model.folder)
    return onnx_file(model, "GraphSurgeries")


def tie_word_embeddings(proto: Any, ctx: PassContext) -> None:
    import numpy as np

    from olivepress.passes.onnx import embeddings

    lookup, head = embeddings.find_lookup(proto), embeddings.find_head(proto)
    if lookup is None or head is None:
        ctx.log.warning("TieWordEmbeddings: no input_ids lookup and logits head found; nothing to tie")
        return
    if head.op_type != "MatMulNBits":
        ctx.log.warning(
            "TieWordEmbeddings: lm_head is a float MatMul; olivepress ties quantized heads only "
            "(RTN with lm_head true quantizes it)"
        )
        return
    if embeddings.reads_head(proto, lookup, head.node):
        ctx.log.info("TieWordEmbeddings: the embedding lookup already reads lm_head's weights")
        return
    head_weight = embeddings.dequantized_head(proto, head.node)
    if lookup.op_type == "Gather":
        table = embeddings.float_lookup_weight(proto, lookup)
    else:
        table = _dequantized_lookup(proto, lookup)
    if table is None or table.shape != head_weight.shape:
        ctx.log.warning(
            "TieWordEmbeddings: embeddings %s and lm_head %s differ in shape; not tied",
            None if table is None else table.shape,
            head_weight.shape,
        )
        return
    # The checkpoint stores the embeddings as lm_head's dequantised values in its float dtype.
    tolerance = 2.0**-9 * float(np.abs(head_weight).max())
    difference = float(np.abs(table.astype(np.float32) - head_weight).max())
    if difference > tolerance:
        ctx.log.warning(
            "TieWordEmbeddings: the embeddings differ from lm_head's weights (max %.3g); the model does "
            "not tie them, so they stay apart",
            difference,
        )
        return
    before = table.nbytes
    embeddings.tie_lookup_to_head(proto, lookup, head.node, table.shape[1])
    ctx.log.info(
        "TieWordEmbeddings: the embedding lookup reads lm_head's %d-bit weights (%.1f MB saved)",
        next(a.i for a in head.node.attribute if a.name == "bits"),
        before / 1e6,
    )


def _dequantized_lookup(proto: Any, lookup: Any) -> Any:
    """A GatherBlockQuantized lookup's table as float (for comparing it with the head)."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    if lookup.input[0] not in inits:
        return None
    bits = next((a.i for a in lookup.attribute if a.name == "bits"), 4)
    block = next(a.i for a in lookup.attribute if a.name == "block_size")
    data = numpy_helper.to_array(inits[lookup.input[0]])
    codes = data if bits == 8 else np.stack([data & 0x0F, data >> 4], -1).reshape(data.shape[0], -1)
    scales = numpy_helper.to_array(inits[lookup.input[2]]).astype(np.float32)
    rows, blocks = codes.shape[0], scales.shape[-1]
    zp = np.full((rows, blocks), 2 ** (bits - 1), np.float32)
    if len(lookup.input) > 3 and lookup.input[3]:
        raw = numpy_helper.to_array(inits[lookup.input[3]])
        zp = (raw if bits == 8 else np.stack([raw & 0x0F, raw >> 4], -1).reshape(rows, -1))[:, :blocks]
    grouped = codes[:, : blocks * block].astype(np.float32).reshape(rows, blocks, block)
    return ((grouped - zp[:, :, None]) * scales.reshape(rows, blocks)[:, :, None]).reshape(rows, -1)


def quantize_embedding_int8(proto: Any, ctx: PassContext, block_size: int = 128, **_: Any) -> None:
    from olivepress.passes.onnx import embeddings
    from olivepress.quant.grid import Grid

    lookup = embeddings.find_lookup(proto)
    if lookup is None or lookup.op_type != "Gather":
        ctx.log.warning("QuantizeEmbeddingInt8: no float input_ids Gather found; nothing to quantize")
        return
    embeddings.quantize_lookup(proto, lookup, Grid(bits=8, group_size=block_size, sym=False))
    ctx.log.info("QuantizeEmbeddingInt8: embeddings in 8 bits, blocks of %d", block_size)


SURGERY_FUNCTIONS = {
    "TieWordEmbeddings": tie_word_embeddings,
    "QuantizeEmbeddingInt8": quantize_embedding_int8,
}

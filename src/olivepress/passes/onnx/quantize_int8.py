"""What OnnxDynamicQuantization and OnnxStaticQuantization share: int8 options, running an
onnxruntime quantizer into the pass's folder, and text calibration inputs for the static one.

The passes themselves are `quantize_int8_dynamic.py` and `quantize_int8_static.py` (the
registry maps one pass name to one module).
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from olivepress.errors import OlivepressError
from olivepress.models.handles import OnnxModel
from olivepress.models.onnx_session import onnx_file
from olivepress.passes.base import PassContext
from olivepress.passes.onnx.model_files import (
    OnnxOutputConfig,
    load_model,
    quiet_loggers,
    set_metadata,
    write_model,
)

if TYPE_CHECKING:
    import numpy as np
    import onnx
    from transformers import PreTrainedTokenizerBase

QUANTIZED_OPS = {
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "QAttention",
    "QEmbedLayerNormalization",
    "QLinearMatMul",
    "QLinearConv",
    "QGemm",
    "ConvInteger",
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearAdd",
    "QLinearMul",
    "QGather",
}
_TYPE_SPELLINGS = {"int8": "QInt8", "uint8": "QUInt8", "int16": "QInt16", "uint16": "QUInt16"}


def quant_type_name(value: Any) -> Any:
    """'QInt8' however it is spelled: QInt8, qint8, int8, QuantType.QInt8."""
    if not isinstance(value, str):
        return value
    text = value.strip().removeprefix("QuantType.")
    lowered = text.lower().removeprefix("q")
    return _TYPE_SPELLINGS.get(lowered, text)


class Int8Config(OnnxOutputConfig):
    """Options both int8 passes take (onnxruntime.quantization's names)."""

    weight_type: Literal["QInt8", "QUInt8"] = Field("QInt8", description="Integer type of the weights.")
    per_channel: bool = Field(
        True,
        description="One scale per output channel of each weight (much closer to float than one per tensor).",
    )
    reduce_range: bool = Field(
        False, description="7-bit weights, for CPUs without VNNI that overflow in 8 bits."
    )
    op_types_to_quantize: list[str] | None = Field(
        None, description="Op types to quantize (default: all onnxruntime can)."
    )
    nodes_to_quantize: list[str] | None = Field(None, description="Quantize only these nodes (by name).")
    nodes_to_exclude: list[str] = Field(
        default_factory=list, description="Nodes (by name) to leave in float."
    )
    extra_options: dict[str, Any] = Field(
        default_factory=dict, description="onnxruntime quantizer extra_options, passed as they are."
    )

    @field_validator("weight_type", mode="before")
    @classmethod
    def _type_spelling(cls, value: Any) -> Any:
        return quant_type_name(value)

    def quantizer_arguments(self) -> dict[str, Any]:
        import onnx
        from onnxruntime.quantization import QuantType

        # Fused contrib ops (Attention, SkipLayerNormalization) defeat onnx shape inference;
        # without a default type the quantizer stops at the first tensor it cannot type.
        extra = {"DefaultTensorType": onnx.TensorProto.FLOAT, **self.extra_options}
        return dict(
            weight_type=QuantType[self.weight_type],
            per_channel=self.per_channel,
            reduce_range=self.reduce_range,
            op_types_to_quantize=self.op_types_to_quantize,
            nodes_to_quantize=self.nodes_to_quantize,
            nodes_to_exclude=list(self.nodes_to_exclude),
            extra_options=extra,
        )


def run_quantizer(
    pass_name: str,
    model: OnnxModel,
    config: Int8Config,
    out_dir: Path,
    ctx: PassContext,
    quantize: Callable[[Path, Path], None],
) -> OnnxModel:
    """Run `quantize(input_path, output_path)` in a scratch folder, check it quantized
    something, and write the result into `out_dir` beside the input's other files."""
    import onnx

    source = onnx_file(model, pass_name)
    before = Counter(node.op_type for node in onnx.load(str(source), load_external_data=False).graph.node)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".quantize-") as scratch:
        output = Path(scratch) / source.name
        try:
            with quiet_loggers(
                "", "onnxruntime", level=logging.ERROR
            ):  # it logs every tensor it skips, and nags
                quantize(source, output)
        except OlivepressError:
            raise
        except Exception as exc:
            raise OlivepressError(f"{pass_name} failed on {source}: {type(exc).__name__}: {exc}") from exc
        quantized = load_model(output)
    counts = Counter(node.op_type for node in quantized.graph.node)
    added = {
        op: count - before.get(op, 0)
        for op, count in counts.items()
        if op in QUANTIZED_OPS and count > before.get(op, 0)
    }
    if not added:
        raise OlivepressError(
            f"{pass_name} quantized no node of {source.name}; check op_types_to_quantize, "
            "nodes_to_quantize and "
            "nodes_to_exclude (or drop the pass)"
        )
    ctx.log.info("%s: %s", pass_name, ", ".join(f"{op} x{count}" for op, count in sorted(added.items())))
    set_metadata(quantized, quantization=f"{pass_name} {config.weight_type} weights")
    return write_model(quantized, out_dir, config, source=model, file_name=source.name)


def graph_inputs(model: onnx.ModelProto) -> list[tuple[str, np.dtype, list[int | str]]]:
    """(name, numpy dtype, shape) of each real input (initializers listed as inputs are not)."""
    import numpy as np
    from onnx import helper

    initializers = {init.name for init in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [
            dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?") for dim in tensor.shape.dim
        ]
        inputs.append((value.name, np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)), shape))
    return inputs


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved beside the ONNX model (OnnxConversion copies it there)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise OlivepressError(
            f"calibration needs the model's tokenizer beside it in {folder} (OnnxConversion copies it "
            f"there): {exc}"
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def text_feeds(
    tokenizer: PreTrainedTokenizerBase,
    inputs: list[tuple[str, np.dtype, list[int | str]]],
    texts: list[str],
    seq_len: int,
    fixed_length: bool,
) -> list[dict[str, np.ndarray]]:
    """Model inputs for each text.

    One text per feed, unless the model has a fixed batch size; padded to `seq_len` when
    `fixed_length` (histogram calibrations need equal shapes) or when the model's length is fixed.
    """
    import numpy as np

    shapes = {name: shape for name, _, shape in inputs}
    ids_shape = shapes.get("input_ids", ["batch", "sequence"])
    batch = ids_shape[0] if ids_shape and isinstance(ids_shape[0], int) and ids_shape[0] > 0 else 1
    fixed = (
        ids_shape[1] if len(ids_shape) > 1 and isinstance(ids_shape[1], int) and ids_shape[1] > 0 else None
    )
    length = fixed or seq_len
    padding = "max_length" if (fixed or fixed_length) else "longest"
    usable = [text for text in texts if text.strip()]
    feeds = []
    for start in range(0, len(usable) - batch + 1, batch):
        encoded = tokenizer(
            usable[start : start + batch],
            truncation=True,
            max_length=length,
            padding=padding,
            return_tensors="np",
        )
        ids = encoded["input_ids"]
        made = {
            "attention_mask": lambda ids=ids: np.ones_like(ids),
            "token_type_ids": lambda ids=ids: np.zeros_like(ids),
            "position_ids": lambda ids=ids: np.broadcast_to(np.arange(ids.shape[1]), ids.shape).copy(),
        }
        feed = {}
        for name, dtype, _ in inputs:
            if name in encoded:
                value = encoded[name]
            elif name in made:
                value = made[name]()
            else:
                raise OlivepressError(
                    f"calibration cannot make the model input '{name}' from text; the model takes: "
                    + ", ".join(n for n, _, _ in inputs)
                )
            feed[name] = value.astype(dtype)
        feeds.append(feed)
    return feeds

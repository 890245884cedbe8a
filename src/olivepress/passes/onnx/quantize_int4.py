"""OnnxMatMul4Quantizer: block-wise int4 round-to-nearest weights for the MatMuls of an ONNX model.

onnxruntime's `MatMulNBitsQuantizer` with its default (RTN) algorithm: each MatMul with a
constant weight gets 4-bit weights in blocks of `block_size` input rows, one scale (and, when
asymmetric, one zero point) per block, and becomes a MatMulNBits op (QOperator) or a
DequantizeLinear -> MatMul pair (QDQ, opset 21). Activations stay float; `accuracy_level`
picks the precision MatMulNBits computes in (4: int8, the fastest on CPUs).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Literal

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
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import WeightOnlyQuantConfig

VERSION = 1
ACCEPTS = ("onnx",)


class BlockConfig(OnnxOutputConfig):
    """The options every MatMulNBits weight quantizer takes (Olive's names)."""

    block_size: int = Field(
        32, description="Input rows per scale: a power of two, 16 or more (32, 64, 128, ...)."
    )
    accuracy_level: Literal[0, 1, 2, 3, 4] | None = Field(
        None,
        description="MatMulNBits compute precision: 1 fp32, 2 fp16, 3 bf16, 4 int8; default: onnxruntime's.",
    )
    nodes_to_exclude: list[str] = Field(
        default_factory=list, description="MatMul nodes (by name) to leave in float."
    )
    nodes_to_include: list[str] | None = Field(None, description="Quantize only these nodes (by name).")

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value < 16 or value & (value - 1):
            raise ValueError(
                f"block_size={value} must be a power of two of 16 or more (16, 32, 64, 128, ...)"
            )
        return value


class Config(BlockConfig):
    is_symmetric: bool = Field(True, description="Symmetric grid without zero points.")
    op_types_to_quantize: list[Literal["MatMul", "Gather"]] | None = Field(
        None, description="Op types to quantize: MatMul (default), Gather (embedding tables, QOperator only)."
    )
    quant_format: Literal["QOperator", "QDQ"] = Field(
        "QOperator", description="QOperator: MatMulNBits; QDQ: DequantizeLinear + MatMul."
    )


def run(model: OnnxModel, config: Config, out_dir: Path, ctx: PassContext) -> OnnxModel:
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig

    source = onnx_file(model, "OnnxMatMul4Quantizer")
    onnx_model = load_model(source)
    if config.quant_format == "QDQ" and _default_opset(onnx_model) < 21:
        raise OlivepressError(
            f"int4 QDQ needs opset 21 or newer, and {source.name} uses {_default_opset(onnx_model)}; "
            "use quant_format QOperator (MatMulNBits), or export with target_opset 21"
        )
    algorithm = DefaultWeightOnlyQuantConfig(
        block_size=config.block_size,
        is_symmetric=config.is_symmetric,
        accuracy_level=config.accuracy_level,
        quant_format=QuantFormat[config.quant_format],
        op_types_to_quantize=tuple(config.op_types_to_quantize or ["MatMul"]),
    )
    grid = "symmetric" if config.is_symmetric else "asymmetric"
    quantized = quantize_matmuls(
        onnx_model,
        algorithm,
        config,
        ctx,
        pass_name="OnnxMatMul4Quantizer",
        label=f"int4 (block {config.block_size}, {grid})",
    )
    set_metadata(
        quantized, quantization=f"int4 block {config.block_size} {'sym' if config.is_symmetric else 'asym'}"
    )
    return write_model(quantized, out_dir, config, source=model, file_name=source.name)


def quantize_matmuls(
    onnx_model: onnx.ModelProto,
    algorithm: WeightOnlyQuantConfig,
    config: BlockConfig,
    ctx: PassContext,
    *,
    pass_name: str,
    label: str,
) -> onnx.ModelProto:
    """Run onnxruntime's MatMulNBitsQuantizer with `algorithm` over the MatMuls `config` selects.

    Shared by the RTN (default) and HQQ passes, whose configs share the block, accuracy and node
    options; an `accuracy_level` is set on every MatMulNBits, since onnxruntime's HQQ does not.
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    symmetric = isinstance(config, Config) and config.is_symmetric
    qdq = isinstance(config, Config) and config.quant_format == "QDQ"
    quantizer = MatMulNBitsQuantizer(
        onnx_model,
        block_size=config.block_size,
        is_symmetric=symmetric,
        accuracy_level=config.accuracy_level,
        nodes_to_exclude=list(config.nodes_to_exclude),
        nodes_to_include=config.nodes_to_include,
        algo_config=algorithm,
    )
    with quiet_loggers("", "onnxruntime", level=logging.ERROR):
        quantizer.process()
    quantized = quantizer.model.model
    if config.accuracy_level is not None:
        for node in quantized.graph.node:
            if node.op_type == "MatMulNBits":
                _set_int_attribute(node, "accuracy_level", config.accuracy_level)
    counts = Counter(node.op_type for node in quantized.graph.node)
    made = counts["MatMulNBits"] + counts["GatherBlockQuantized"] + (counts["DequantizeLinear"] if qdq else 0)
    if not made:
        raise OlivepressError(
            f"{pass_name} found no MatMul with a constant weight to quantize "
            "(or all were excluded); check nodes_to_exclude / nodes_to_include, or drop the pass"
        )
    ctx.log.info(
        "%s: MatMulNBits x%d%s",
        label,
        counts["MatMulNBits"],
        f", GatherBlockQuantized x{counts['GatherBlockQuantized']}" if counts["GatherBlockQuantized"] else "",
    )
    return quantized


def _set_int_attribute(node: onnx.NodeProto, name: str, value: int) -> None:
    import onnx

    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, onnx.helper.make_attribute(name, value)])


def _default_opset(model) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)

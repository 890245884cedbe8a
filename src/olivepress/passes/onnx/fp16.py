"""OnnxFloatToFloat16: the float32 tensors and ops of an ONNX model in float16.

onnxruntime's float16 converter (`onnxruntime.transformers.float16`) rewrites initializers and
ops to float16 and puts Cast nodes around the ops in `op_block_list` (by default the ones
onnxruntime has no float16 kernel for). Half the size; faster on GPUs. On a CPU most kernels
are float32, so a float16 model runs there, but usually slower than float32.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from olivepress.models.handles import OnnxModel
from olivepress.models.onnx_session import onnx_file
from olivepress.passes.base import PassContext
from olivepress.passes.onnx.model_files import (
    OnnxOutputConfig,
    load_model,
    set_metadata,
    write_model,
)

VERSION = 1
ACCEPTS = ("onnx",)


class Config(OnnxOutputConfig):
    keep_io_types: bool = Field(
        True, description="Keep float32 model inputs and outputs (a drop-in replacement)."
    )
    op_block_list: list[str] | None = Field(
        None, description="Op types to keep in float32 (default: onnxruntime's list)."
    )
    node_block_list: list[str] | None = Field(None, description="Nodes (by name) to keep in float32.")
    min_positive_val: float = Field(
        5.96e-08, gt=0, description="Smaller non-zero constants are raised to this."
    )
    max_finite_val: float = Field(65504.0, gt=0, description="Larger constants are clipped to this.")


def run(model: OnnxModel, config: Config, out_dir: Path, ctx: PassContext) -> OnnxModel:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = onnx_file(model, "OnnxFloatToFloat16")
    converted = convert_float_to_float16(
        load_model(source),
        min_positive_val=config.min_positive_val,
        max_finite_val=config.max_finite_val,
        keep_io_types=config.keep_io_types,
        op_block_list=config.op_block_list,
        node_block_list=config.node_block_list,
    )
    ctx.log.info(
        "Converted %s to float16%s",
        source.name,
        " (float32 inputs and outputs kept)" if config.keep_io_types else "",
    )
    set_metadata(converted, precision="fp16")
    return write_model(converted, out_dir, config, source=model, file_name=source.name)

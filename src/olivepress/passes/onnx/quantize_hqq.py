"""OnnxHqqQuantization: int4 MatMul weights by Half-Quadratic Quantization, no calibration data.

HQQ (Badri & Shaji, 2023) starts from the min/max asymmetric grid of each block and then moves
the zero point to minimise the block's error under an l_p norm with p < 1 (a proximal solver),
which spends the 16 levels on the bulk of the weights rather than on the outliers. onnxruntime
ships the solver (`HQQWeightOnlyQuantConfig`); this pass runs it over the model's MatMuls with a
constant weight, like OnnxMatMul4Quantizer runs round-to-nearest. The zero points stay float
(MatMulNBits takes them in the scales' type). LoRA adapter MatMuls read graph inputs, not
constants, so an adapter-carrying model keeps its adapters switchable and only the base weights
are quantized.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from olivepress.models.handles import OnnxModel
from olivepress.models.onnx_session import onnx_file
from olivepress.passes.base import PassContext
from olivepress.passes.onnx.model_files import load_model, set_metadata, write_model
from olivepress.passes.onnx.quantize_int4 import BlockConfig, quantize_matmuls

VERSION = 1
ACCEPTS = ("onnx",)


class Config(BlockConfig):
    block_size: int = Field(
        128, description="Input rows per scale and zero point: a power of two, 16 or more."
    )
    axis: Literal[0] = Field(
        0, description="Blocks run along the weight's input axis, the only one MatMulNBits takes."
    )


def run(model: OnnxModel, config: Config, out_dir: Path, ctx: PassContext) -> OnnxModel:
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig

    source = onnx_file(model, "OnnxHqqQuantization")
    algorithm = HQQWeightOnlyQuantConfig(block_size=config.block_size, bits=4)
    quantized = quantize_matmuls(
        load_model(source),
        algorithm,
        config,
        ctx,
        pass_name="OnnxHqqQuantization",
        label=f"int4 HQQ (block {config.block_size})",
    )
    set_metadata(quantized, quantization=f"int4 hqq block {config.block_size}")
    return write_model(quantized, out_dir, config, source=model, file_name=source.name)

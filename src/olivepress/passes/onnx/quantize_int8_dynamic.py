"""OnnxDynamicQuantization: int8 weights, activations quantized at run time (no calibration).

onnxruntime's `quantize_dynamic`: MatMul weights become int8 (one scale per output channel by
default) and each activation is quantized per batch as it flows (DynamicQuantizeLinear ->
MatMulInteger, or QAttention / QEmbedLayerNormalization on a fused transformer). The usual int8
choice for transformers on a CPU: about 4x smaller, faster, and close to float.
"""

from __future__ import annotations

from pathlib import Path

from olivepress.models.handles import OnnxModel
from olivepress.passes.base import PassContext
from olivepress.passes.onnx.quantize_int8 import Int8Config, run_quantizer

VERSION = 1
ACCEPTS = ("onnx",)


class Config(Int8Config):
    pass


def run(model: OnnxModel, config: Config, out_dir: Path, ctx: PassContext) -> OnnxModel:
    from onnxruntime.quantization import quantize_dynamic

    def quantize(source: Path, output: Path) -> None:
        quantize_dynamic(source, output, use_external_data_format=True, **config.quantizer_arguments())

    return run_quantizer("OnnxDynamicQuantization", model, config, out_dir, ctx, quantize)

"""OnnxStaticQuantization: int8 weights and activations, activation ranges calibrated on text.

onnxruntime's `quantize_static`: the model runs on calibration inputs (texts from a data
config, tokenized with the tokenizer beside the model), each activation's range is recorded,
and fixed scales are written as QuantizeLinear/DequantizeLinear pairs (QDQ, what NPUs,
TensorRT and OpenVINO read) or as QLinear* ops (QOperator).

Two defaults depart from onnxruntime's. Activations are uint8 (with int8 weights), the pair
x86 CPUs compute fastest, at the same accuracy. And MatMuls that read a GELU output stay in
float. A GELU output has a long tail of large values (the FFN down-projection's input in
BERT-style models), and one fixed int8 scale for it loses the small values that carry most
of the signal. docs/benchmarks.md (the encoder) has the figures for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from olivepress.data.config import DataConfig
from olivepress.errors import OlivepressError
from olivepress.models.handles import OnnxModel
from olivepress.passes.base import PassContext
from olivepress.passes.onnx.model_files import load_model
from olivepress.passes.onnx.quantize_int8 import (
    Int8Config,
    graph_inputs,
    load_tokenizer,
    quant_type_name,
    run_quantizer,
    text_feeds,
)

VERSION = 1
ACCEPTS = ("onnx",)

GELU_OPS = {"Gelu", "BiasGelu", "FastGelu", "QuickGelu", "GemmFastGelu"}


class Config(Int8Config):
    data_config: str | DataConfig | None = Field(
        None,
        description=(
            "Calibration texts: the name of a data config under data_configs, or one inline. Required."
        ),
    )
    quant_format: Literal["QDQ", "QOperator"] = Field(
        "QDQ", description="QDQ: QuantizeLinear/DequantizeLinear pairs; QOperator: QLinear* ops."
    )
    activation_type: Literal["QInt8", "QUInt8", "QInt16", "QUInt16"] = Field(
        "QUInt8",
        description="Integer type of the activations (uint8 with int8 weights: the fast pair on x86 CPUs).",
    )
    calibrate_method: Literal["MinMax", "Entropy", "Percentile", "Distribution"] = Field(
        "MinMax", description="How activation ranges are chosen from the calibration runs."
    )
    calibration_samples: int = Field(
        64, ge=1, description="Texts to calibrate on (the first ones of the data)."
    )
    calibration_seq_len: int = Field(
        128, ge=1, description="Tokens per calibration text (longer ones are cut)."
    )
    exclude_gelu_matmuls: bool = Field(
        True, description="Leave MatMuls that read a GELU output in float (see the module notes)."
    )

    @field_validator("activation_type", mode="before")
    @classmethod
    def _activation_spelling(cls, value: Any) -> Any:
        return quant_type_name(value)


def run(model: OnnxModel, config: Config, out_dir: Path, ctx: PassContext) -> OnnxModel:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if config.data_config is None:
        raise OlivepressError(
            "OnnxStaticQuantization needs calibration data: set data_config to the name of a data "
            "config under "
            "data_configs (or an inline one), or use OnnxDynamicQuantization, which needs none"
        )
    data_config = ctx.data_config(config.data_config)

    def quantize(source_path: Path, output: Path) -> None:
        source = _with_shapes(load_model(source_path), ctx)
        feeds = _calibration_feeds(model.folder, source, data_config, config)
        ctx.log.info("Calibrating on %d inputs from data config '%s'", len(feeds), data_config.name)
        arguments = config.quantizer_arguments()
        if config.exclude_gelu_matmuls:
            skipped = matmuls_after_gelu(source)
            arguments["nodes_to_exclude"] = sorted({*arguments["nodes_to_exclude"], *skipped})
            if skipped:
                ctx.log.info("Leaving %d MatMul(s) that read a GELU output in float", len(skipped))

        class Feeds(CalibrationDataReader):
            def __init__(self) -> None:
                self.remaining = iter(feeds)

            def get_next(self):
                return next(self.remaining, None)

        quantize_static(
            source,
            output,
            Feeds(),
            quant_format=QuantFormat[config.quant_format],
            activation_type=QuantType[config.activation_type],
            calibrate_method=CalibrationMethod[config.calibrate_method],
            use_external_data_format=True,
            **arguments,
        )

    return run_quantizer("OnnxStaticQuantization", model, config, out_dir, ctx, quantize)


def _with_shapes(model, ctx: PassContext):
    """The model with symbolic shape inference run on it: it types the outputs of fused
    contrib ops, without which the static quantizer skips or trips over them."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception as exc:  # the quantizer can still run, with fewer typed tensors
        ctx.log.info("Symbolic shape inference failed (%s); quantizing without it", exc)
        return model


def _calibration_feeds(folder: Path, model, data_config: DataConfig, config: Config) -> list:
    from olivepress.data.loading import load_records
    from olivepress.data.templates import render_texts

    tokenizer = load_tokenizer(folder)
    texts = [
        t
        for t in render_texts(load_records(data_config), data_config.pre_process_data_config, tokenizer)
        if t.strip()
    ]
    # Histogram methods stack the activations of all runs, so every run needs the same shape.
    fixed_length = config.calibrate_method != "MinMax"
    feeds = text_feeds(
        tokenizer,
        graph_inputs(model),
        texts[: config.calibration_samples],
        config.calibration_seq_len,
        fixed_length,
    )
    if not feeds:
        raise OlivepressError(
            f"data config '{data_config.name}' gave no non-empty text to calibrate on; check its files "
            "and text fields"
        )
    return feeds


def matmuls_after_gelu(model) -> list[str]:
    """Names of the MatMul nodes whose activation input is a GELU output (fused or spelled out
    as x * 0.5 * (1 + erf(x / sqrt 2)))."""
    producers = {output: node for node in model.graph.node for output in node.output}

    def is_gelu(name: str, depth: int = 0) -> bool:
        node = producers.get(name)
        if node is None or depth > 3:
            return False
        if node.op_type in GELU_OPS or node.op_type in ("Erf", "Tanh"):
            return node.op_type in GELU_OPS or depth > 0
        return node.op_type in ("Mul", "Add") and any(is_gelu(i, depth + 1) for i in node.input)

    return [node.name for node in model.graph.node if node.op_type == "MatMul" and is_gelu(node.input[0])]

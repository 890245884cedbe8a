"""Pass names (and the seed configs' spellings of them) mapped to their modules.

Modules are imported only when a pass is used, so that reading a config does not pull in
torch or onnxruntime.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from olivepress.errors import OlivepressError, did_you_mean


@dataclass(frozen=True)
class PassSpec:
    name: str
    module_name: str
    aliases: tuple[str, ...] = ()
    # The CLI command that offers the pass by its lower-case name (quantize --algorithm awq).
    command: str | None = None

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)


PASSES: tuple[PassSpec, ...] = (
    PassSpec("ModelBuilder", "olivepress.passes.onnx.model_builder"),
    PassSpec("ExtractAdapters", "olivepress.passes.onnx.extract_adapters"),
    PassSpec("MergeAdapterWeights", "olivepress.passes.torch.merge_adapters"),
    PassSpec("AWQ", "olivepress.passes.torch.awq", ("AutoAWQQuantizer",), command="quantize"),
    PassSpec("GPTQ", "olivepress.passes.torch.gptq", ("GptqQuantizer",), command="quantize"),
    PassSpec("RTN", "olivepress.passes.torch.rtn", ("Rtn",), command="quantize"),
    PassSpec("SelectiveMixedPrecision", "olivepress.passes.torch.selective_mixed_precision"),
    PassSpec("OnnxConversion", "olivepress.passes.onnx.export"),
    PassSpec(
        "OrtTransformersOptimization",
        "olivepress.passes.onnx.transformer_optimize",
        ("OrtTransformerOptimization",),
    ),
    PassSpec("OnnxDynamicQuantization", "olivepress.passes.onnx.quantize_int8_dynamic"),
    PassSpec("OnnxStaticQuantization", "olivepress.passes.onnx.quantize_int8_static"),
    PassSpec(
        "OnnxMatMul4Quantizer", "olivepress.passes.onnx.quantize_int4", ("OnnxBlockWiseRtnQuantization",)
    ),
    PassSpec("OnnxHqqQuantization", "olivepress.passes.onnx.quantize_hqq"),
    PassSpec("OnnxFloatToFloat16", "olivepress.passes.onnx.fp16"),
    PassSpec("GraphSurgeries", "olivepress.passes.onnx.graph_surgeries"),
    PassSpec("LoRA", "olivepress.passes.torch.lora.lora", command="finetune"),
    PassSpec("QLoRA", "olivepress.passes.torch.lora.qlora", command="finetune"),
    PassSpec("DoRA", "olivepress.passes.torch.lora.dora", command="finetune"),
    PassSpec("LoHa", "olivepress.passes.torch.lora.loha", command="finetune"),
    PassSpec("LoKr", "olivepress.passes.torch.lora.lokr", command="finetune"),
)


def _by_lower_name() -> dict[str, PassSpec]:
    table = {}
    for spec in PASSES:
        for name in (spec.name, *spec.aliases):
            table[name.lower()] = spec
    return table


def pass_names() -> list[str]:
    """Every accepted pass type name, canonical names first."""
    return [spec.name for spec in PASSES] + [a for spec in PASSES for a in spec.aliases]


def command_passes(command: str) -> dict[str, str]:
    """The passes a CLI command offers, by the lower-case name it takes (`awq` -> `AWQ`)."""
    return {spec.name.lower(): spec.name for spec in PASSES if spec.command == command}


def find_pass(type_name: str) -> PassSpec:
    """The pass registered under `type_name` (case-insensitive); a clear error otherwise."""
    spec = _by_lower_name().get(type_name.lower())
    if spec is None:
        known = ", ".join(spec.name for spec in PASSES)
        raise OlivepressError(
            f"unknown pass type '{type_name}'{did_you_mean(type_name, pass_names())}; "
            f"available passes: {known}"
        )
    return spec

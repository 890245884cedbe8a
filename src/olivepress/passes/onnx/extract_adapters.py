"""ExtractAdapters: lift the LoRA weights out of an ORT GenAI model into an .onnx_adapter file.

Each LoRA initializer becomes a graph input whose default is a rank-0 tensor: with no adapter
active the model still runs (the LoRA path adds zeros), and with an adapter active ORT feeds
its tensors under the same names. On the CPU the graph also goes behind one switch
(runtime/lora_switch.py), so with no adapter active the LoRA nodes do not run at all. Other
adapters for the same base convert with `olivepress convert-adapters` and load side by side.

`adapter_precision` sets how the adapter files store the LoRA matrices (fp32, fp16, or
block-quantized int8 / int4): the graph then reads them through small decoders
(runtime/adapter_precision.py), and every adapter converted for this model uses the same.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from olivepress.errors import OlivepressError
from olivepress.models.handles import OnnxModel
from olivepress.passes.base import PassConfig, PassContext
from olivepress.runtime.adapter_precision import (
    BLOCK_SIZES,
    DEFAULT_BLOCK_SIZE,
    PRECISIONS,
    AdapterPrecision,
    add_decoders,
    encode,
)
from olivepress.runtime.adapters import (
    ADAPTER_FILE,
    RANK_DIM,
    SWITCH,
    is_lora_name,
    model_file,
    register_adapter,
    switch_on,
    write_adapter_file,
)
from olivepress.runtime.lora_switch import add_lora_switch

VERSION = 3
ACCEPTS = ("onnx",)


class Config(PassConfig):
    adapter_name: str = Field("default", description="Name the extracted adapter is listed under.")
    adapter_file: str = Field(ADAPTER_FILE, description="File name of the adapter, written beside the model.")
    lora_switch: bool | None = Field(
        None,
        description=(
            "Put the LoRA paths behind one If, so the model runs its plain base graph when no adapter "
            "is active "
            "(faster; the pre-packed int4 weights are then held twice in memory). Default: on for the "
            "CPU provider, "
            "where it was measured."
        ),
    )
    adapter_precision: str = Field(
        "fp32", description=f"How the adapter file stores the LoRA matrices: one of {', '.join(PRECISIONS)}."
    )
    adapter_block_size: int = Field(
        DEFAULT_BLOCK_SIZE, description=f"Values per scale for int8 / int4 adapters: one of {BLOCK_SIZES}."
    )
    adapter_symmetric: bool = Field(True, description="int8 / int4: a zero point fixed at the grid's middle.")

    @field_validator("adapter_precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        if value not in PRECISIONS:
            raise ValueError(f"adapter precision '{value}' is not one of {', '.join(PRECISIONS)}")
        return value


def run(model: OnnxModel, config: Config, out_dir: Path, ctx: PassContext) -> OnnxModel:
    import onnx
    from onnx import helper, numpy_helper

    precision = AdapterPrecision(config.adapter_precision, config.adapter_block_size)
    source_file = model_file(model.folder)
    proto = onnx.load(source_file)
    graph = proto.graph
    matrices: dict[str, np.ndarray] = {}
    fixed: dict[str, tuple[int, int]] = {}  # name -> (size of its non-rank axis, elem type)
    for initializer in list(graph.initializer):
        if is_lora_name(initializer.name):
            matrices[initializer.name] = numpy_helper.to_array(initializer)
            axis = 0 if ".lora_A." in initializer.name else 1
            fixed[initializer.name] = (matrices[initializer.name].shape[axis], initializer.data_type)
            graph.initializer.remove(initializer)
    if not matrices:
        raise OlivepressError(
            f"{model.path} has no LoRA weights to extract; build it from a model with an adapter_path"
        )
    if precision.name == "fp32":
        adapter, defaults = matrices, {}
        for name, (size, elem_type) in fixed.items():
            dims = [size, RANK_DIM] if ".lora_A." in name else [RANK_DIM, size]
            graph.input.append(helper.make_tensor_value_info(name, elem_type, dims))
            empty_shape = [0 if dim == RANK_DIM else dim for dim in dims]
            defaults[name] = np.zeros(empty_shape, dtype=matrices[name].dtype)
    else:
        defaults = add_decoders(proto, fixed, precision, RANK_DIM)
        encoded = encode(
            {name: m.astype(np.float32) for name, m in matrices.items()},
            precision,
            symmetric=config.adapter_symmetric,
        )
        adapter = {name: tensor.astype(defaults[name].dtype) for name, tensor in encoded.items()}
        stored_mb = sum(t.nbytes for t in adapter.values()) / 1e6
        fp32_mb = sum(m.size * 4 for m in matrices.values()) / 1e6
        ctx.log.info(
            "LoRA matrices stored as %s: %.2f MB (%.2f MB as fp32)", precision.name, stored_mb, fp32_mb
        )
    # Rank-0 defaults: with no adapter active the model runs, and the LoRA paths add nothing.
    graph.initializer.extend(numpy_helper.from_array(empty, name) for name, empty in defaults.items())
    if (
        config.lora_switch
        if config.lora_switch is not None
        else ctx.execution_provider == "CPUExecutionProvider"
    ):
        packed = {node.input[1] for node in graph.node if node.op_type == "MatMulNBits"}
        packed_mb = sum(len(init.raw_data) for init in graph.initializer if init.name in packed) / 1e6
        skipped = add_lora_switch(proto)
        adapter.update(switch_on())
        ctx.log.info(
            "LoRA paths behind the %s switch: %d nodes skipped when no adapter is active; ONNX Runtime "
            "pre-packs "
            "the %.0f MB of int4 weights once per branch (lora_switch: false keeps one copy, and runs "
            "the LoRA nodes)",
            SWITCH,
            skipped,
            packed_mb,
        )
    for item in model.folder.iterdir():
        if item.is_file() and item.suffix not in (".onnx", ".data") and not item.name.endswith(".onnx.data"):
            shutil.copy2(item, out_dir / item.name)
    onnx.save(
        proto, out_dir / source_file.name, save_as_external_data=True, location=f"{source_file.name}.data"
    )
    adapter_path = write_adapter_file(adapter, out_dir / config.adapter_file)
    register_adapter(out_dir, config.adapter_name, adapter_path.name)
    ctx.log.info("Extracted %d LoRA tensors into %s", len(adapter), adapter_path.name)
    return OnnxModel(path=str(out_dir), adapters={**model.adapters, config.adapter_name: str(adapter_path)})

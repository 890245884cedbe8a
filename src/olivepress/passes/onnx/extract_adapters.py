"""ExtractAdapters: lift the LoRA weights out of an ORT GenAI model into an .onnx_adapter file.

Each LoRA initializer becomes a graph input whose default is a rank-0 tensor: with no adapter
active the model still runs (the LoRA path adds zeros), and with an adapter active ORT feeds
its tensors under the same names. On the CPU the graph also goes behind one switch
(runtime/lora_switch.py), so with no adapter active the LoRA nodes do not run at all. Other
adapters for the same base convert with `olivepress convert-adapters` and load side by side.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from pydantic import Field

from olivepress.errors import OlivepressError
from olivepress.models.handles import OnnxModel
from olivepress.passes.base import PassConfig, PassContext
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

VERSION = 2
ACCEPTS = ("onnx",)


class Config(PassConfig):
    adapter_name: str = Field("default", description="Name the extracted adapter is listed under.")
    adapter_file: str = Field(ADAPTER_FILE, description="File name of the adapter, written beside the model.")
    lora_switch: bool | None = Field(
        None,
        description=(
            "Put the LoRA paths behind one If, so the model runs its plain base graph when no adapter is active "
            "(faster; the pre-packed int4 weights are then held twice in memory). Default: on for the CPU provider, "
            "where it was measured."
        ),
    )


def run(model: OnnxModel, config: Config, out_dir: Path, ctx: PassContext) -> OnnxModel:
    import onnx
    from onnx import helper, numpy_helper

    source_file = model_file(model.folder)
    proto = onnx.load(source_file)
    graph = proto.graph
    adapter: dict[str, np.ndarray] = {}
    for initializer in list(graph.initializer):
        if not is_lora_name(initializer.name):
            continue
        weights = numpy_helper.to_array(initializer)
        adapter[initializer.name] = weights
        is_a = ".lora_A." in initializer.name
        empty_shape = (weights.shape[0], 0) if is_a else (0, weights.shape[1])
        graph.initializer.remove(initializer)
        graph.initializer.append(numpy_helper.from_array(np.zeros(empty_shape, dtype=weights.dtype), initializer.name))
        dims = [weights.shape[0], RANK_DIM] if is_a else [RANK_DIM, weights.shape[1]]
        graph.input.append(helper.make_tensor_value_info(initializer.name, initializer.data_type, dims))
    if not adapter:
        raise OlivepressError(
            f"{model.path} has no LoRA weights to extract; build it from a model with an adapter_path"
        )
    if config.lora_switch if config.lora_switch is not None else ctx.execution_provider == "CPUExecutionProvider":
        packed = {node.input[1] for node in graph.node if node.op_type == "MatMulNBits"}
        packed_mb = sum(len(init.raw_data) for init in graph.initializer if init.name in packed) / 1e6
        skipped = add_lora_switch(proto)
        adapter.update(switch_on())
        ctx.log.info(
            "LoRA paths behind the %s switch: %d nodes skipped when no adapter is active; ONNX Runtime pre-packs "
            "the %.0f MB of int4 weights once per branch (lora_switch: false keeps one copy, and runs the LoRA nodes)",
            SWITCH, skipped, packed_mb,
        )
    for item in model.folder.iterdir():
        if item.is_file() and item.suffix not in (".onnx", ".data") and not item.name.endswith(".onnx.data"):
            shutil.copy2(item, out_dir / item.name)
    onnx.save(proto, out_dir / source_file.name, save_as_external_data=True, location=f"{source_file.name}.data")
    adapter_path = write_adapter_file(adapter, out_dir / config.adapter_file)
    register_adapter(out_dir, config.adapter_name, adapter_path.name)
    ctx.log.info("Extracted %d LoRA tensors into %s", len(adapter), adapter_path.name)
    return OnnxModel(path=str(out_dir), adapters={**model.adapters, config.adapter_name: str(adapter_path)})

"""The LoRA switch: with no adapter active the model runs its base graph without LoRA nodes,
and both branches compute what the flat graph with its LoRA paths computes."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from olivepress.errors import OlivepressError
from olivepress.runtime.adapters import SWITCH, read_adapter_file, write_adapter_file
from olivepress.runtime.generate import GenAIModel
from olivepress.runtime.lora_switch import add_lora_switch, branch_nodes, inline_lora_branch

IDS = [1, 5, 9, 14, 27, 3]


def branches(graph: onnx.GraphProto) -> dict[str, onnx.GraphProto]:
    switch = next(node for node in graph.node if node.op_type == "If")
    return {attr.name: attr.g for attr in switch.attribute}


def test_no_adapter_branch_has_no_lora_nodes(tiny_genai_build):
    graph = onnx.load(tiny_genai_build / "model" / "model.onnx", load_external_data=False).graph
    assert [node.op_type for node in graph.node] == ["Cast", "If"]
    split = branches(graph)
    lora_inputs = {value.name for value in graph.input if ".lora_" in value.name}
    with_lora, without = split["then_branch"].node, split["else_branch"].node
    assert sum(name in lora_inputs for node in with_lora for name in node.input) == len(lora_inputs)
    assert not any(name in lora_inputs for node in without for name in node.input)
    # The base graph is everything but the LoRA paths (MatMul, MatMul, Add per adapted Linear).
    assert len(with_lora) - len(without) == 3 * len(lora_inputs) // 2
    assert read_adapter_file(tiny_genai_build / "model" / "adapter_weights.onnx_adapter")[
        SWITCH
    ].tolist() == [1.0]


def test_switched_model_computes_what_the_flat_graph_computes(
    tiny_genai_build, second_adapter_file, tmp_path
):
    flat_dir = tmp_path / "flat"
    shutil.copytree(tiny_genai_build / "model", flat_dir)
    flat = onnx.load(flat_dir / "model.onnx", load_external_data=False)
    assert inline_lora_branch(flat)
    assert not any(value.name == SWITCH for value in flat.graph.input)
    onnx.save(flat, flat_dir / "model.onnx")  # the weights stay in model.onnx.data
    # The flat graph has no switch input, so its adapter files go without the flag.
    for adapter_file, flat_file in (
        (flat_dir / "adapter_weights.onnx_adapter", None),
        (second_adapter_file, flat_dir / "second.onnx_adapter"),
    ):
        tensors = read_adapter_file(adapter_file)
        assert tensors.pop(SWITCH).tolist() == [
            1.0
        ]  # convert-adapters writes the flag for a switched model too
        write_adapter_file(tensors, flat_file or adapter_file)

    # An adapter converted for the other kind of graph is refused, not silently ignored.
    with pytest.raises(OlivepressError, match="without the LoRA switch; convert it"):
        GenAIModel(tiny_genai_build, adapters={"old": flat_dir / "second.onnx_adapter"})
    with pytest.raises(OlivepressError, match="with the LoRA switch, and .* has none"):
        GenAIModel(flat_dir, adapters={"new": second_adapter_file})

    switched = GenAIModel(tiny_genai_build, adapters={"second": second_adapter_file})
    plain = GenAIModel(flat_dir, adapters={"second": flat_dir / "second.onnx_adapter"})
    logits = {}
    for adapter in ("base", "default", "second"):
        logits[adapter] = switched.next_token_logits(IDS, adapter)
        np.testing.assert_allclose(logits[adapter], plain.next_token_logits(IDS, adapter), atol=1e-5)
    assert np.abs(logits["default"] - logits["base"]).mean() > 1e-3  # the adapter branch really ran

    again = onnx.load(flat_dir / "model.onnx", load_external_data=False)
    assert add_lora_switch(again) == len([n for n in branch_nodes(again.graph) if "/lora" in n.name])

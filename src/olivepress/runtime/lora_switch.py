"""One switch for every LoRA path, so a model with no adapter active runs its plain base graph.

Rank-0 LoRA inputs make the LoRA paths add nothing, but their nodes still run: on SmolLM2 int4
the 630 MatMul → MatMul → Add nodes took 0.9 ms of a 7.4 ms token (about 1.4 µs each, empty
or not). So ExtractAdapters puts the whole graph under one ``If`` on a LoRA parameter:

    lora_enabled (float [1], default 0) ─ Cast(bool) ─ If ─ then: the graph with its LoRA paths
                                                          └ else: the graph without them

Every adapter file carries ``lora_enabled = 1`` (ONNX Runtime's AdapterFormat takes float
parameters only, hence the Cast), so activating any adapter takes the LoRA branch. Both
branches read the same outer-scope initializers; what it costs is memory: ONNX Runtime
pre-packs the MatMulNBits weights once per kernel, so each branch keeps its own pre-packed
copy (+72 MB of process memory on SmolLM2 int4; ONNX Runtime issue #20709).

The then-branch keeps the nodes' and values' names (only the graph outputs get a ``lora/``
prefix, which ONNX needs for the If's outputs to keep theirs); the else-branch's are prefixed
``base/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from olivepress.runtime.adapters import SWITCH, is_lora_name

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto

_IF_NAME = "/lora_switch/If"
_THEN_PREFIX, _ELSE_PREFIX = "lora/", "base/"


def add_lora_switch(model: ModelProto) -> int:
    """Put `model`'s graph (changed in place) under an If on `lora_enabled`; returns how many
    LoRA nodes the no-adapter branch leaves out (0, and no change, when it has none)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    lora_nodes, bypass = _lora_nodes(graph)
    if not lora_nodes:
        return 0
    outer = {value.name for value in graph.input} | {init.name for init in graph.initializer}
    then_branch = _branch(graph, outer, skip=set(), bypass={}, prefix="", output_prefix=_THEN_PREFIX)
    else_branch = _branch(
        graph, outer, skip=lora_nodes, bypass=bypass, prefix=_ELSE_PREFIX, output_prefix=_ELSE_PREFIX
    )
    condition = f"{SWITCH}/bool"
    nodes = [
        helper.make_node("Cast", [SWITCH], [condition], to=TensorProto.BOOL, name="/lora_switch/Cast"),
        helper.make_node(
            "If",
            [condition],
            [out.name for out in graph.output],
            name=_IF_NAME,
            then_branch=then_branch,
            else_branch=else_branch,
        ),
    ]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[
        :
    ]  # the shapes inferred for the flat graph name values that now live in the branches
    graph.initializer.append(numpy_helper.from_array(np.zeros([1], dtype=np.float32), SWITCH))
    graph.input.append(helper.make_tensor_value_info(SWITCH, TensorProto.FLOAT, [1]))
    return len(lora_nodes)


def inline_lora_branch(model: ModelProto) -> bool:
    """Undo add_lora_switch (in place): the flat graph with its LoRA paths, as it was before.
    The batcher runs that (its rows mix adapters and the base model). False if not switched."""
    graph = model.graph
    then_branch = _then_branch(graph)
    if then_branch is None:
        return False
    restore = {out.name: _drop_prefix(out.name) for out in then_branch.output}
    nodes = []
    for node in then_branch.node:
        node.output[:] = [restore.get(name, name) for name in node.output]
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    _remove_named(graph.input, SWITCH)
    _remove_named(graph.initializer, SWITCH)
    return True


def branch_nodes(graph: GraphProto) -> list[NodeProto]:
    """The nodes with the LoRA paths: the then-branch of a switched graph, else the graph's own."""
    then_branch = _then_branch(graph)
    return list((graph if then_branch is None else then_branch).node)


def _then_branch(graph: GraphProto) -> GraphProto | None:
    """The LoRA branch of a switched graph; None when the graph has no switch."""
    switch = next((node for node in graph.node if node.op_type == "If" and node.name == _IF_NAME), None)
    if switch is None:
        return None
    return next(attr.g for attr in switch.attribute if attr.name == "then_branch")


def _lora_nodes(graph: GraphProto) -> tuple[set[str], dict[str, str]]:
    """Names of the nodes that compute from LoRA inputs, up to the Adds that join them to the
    base path; and, per such Add's output, the base value it adds to."""
    lora_values = {value.name for value in graph.input if is_lora_name(value.name)}
    nodes, bypass = set(), {}
    for node in graph.node:  # producers come first in ONNX
        fed = [name for name in node.input if name in lora_values]
        if not fed:
            continue
        nodes.add(node.name)
        base = [name for name in node.input if name and name not in lora_values]
        if node.op_type == "Add" and len(base) == 1:
            bypass[node.output[0]] = base[0]  # the join: downstream reads the base value instead
        else:
            lora_values.update(node.output)
    return nodes, bypass


def _branch(
    graph: GraphProto,
    outer: set[str],
    *,
    skip: set[str],
    bypass: dict[str, str],
    prefix: str,
    output_prefix: str,
) -> GraphProto:
    from onnx import NodeProto, helper

    outputs = {out.name for out in graph.output}

    def name_of(value: str) -> str:
        while value in bypass:
            value = bypass[value]
        if not value or value in outer:
            return value
        return output_prefix + value if value in outputs else prefix + value

    nodes = []
    for node in graph.node:
        if node.name in skip:
            continue
        copy = NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + node.name
        copy.input[:] = [name_of(name) for name in node.input]
        copy.output[:] = [name_of(name) for name in node.output]
        nodes.append(copy)
    # LoRA paths join decoder layers, never a graph output, so every output keeps its producer.
    branch_outputs = [
        helper.make_tensor_value_info(name_of(out.name), out.type.tensor_type.elem_type, None)
        for out in graph.output
    ]
    return helper.make_graph(nodes, f"{output_prefix}branch", [], branch_outputs)


def _drop_prefix(name: str) -> str:
    return name[len(_THEN_PREFIX) :] if name.startswith(_THEN_PREFIX) else name


def _remove_named(items, name: str) -> None:
    for item in list(items):
        if item.name == name:
            items.remove(item)

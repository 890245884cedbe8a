"""Several LoRA adapters in one batch: each row of the batch through its own adapter.

A LoRA'd layer in our graphs computes ``x @ W + (x @ A) @ B`` with A [in, r] and B [r, out]
fed as inputs. For a batch whose rows use different adapters, A is fed as the adapters' A
side by side ([in, r1 + r2 + ...]) and B as their B stacked ([r1 + r2 + ..., out]), and a
per-row gate [batch, 1, r1 + r2 + ...] zeroes, in ``x @ A``, the ranks of every adapter but
the row's own (all of them for a base-model row):

    (x @ A_all) * gate_row @ B_all  =  x @ A_own @ B_own

So the one change to the graph is a ``Mul`` by a new input, ``lora_row_gate``, after each
LoRA ``A`` MatMul (made in memory by the batcher; the weights stay in the original files).
A batch of one adapter (or of base rows only) is fed that adapter's own tensors with a gate
of ones, so what it computes is exactly what ORT GenAI computes with that adapter active.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from olivepress.errors import OlivepressError
from olivepress.runtime.adapter_precision import AdapterPrecision, decode
from olivepress.runtime.adapters import SWITCH, is_lora_name, read_adapter_file
from olivepress.runtime.generate import BASE

GATE = "lora_row_gate"


def add_row_gates(model) -> tuple[dict[str, tuple[int, ...]], np.dtype] | None:
    """Put a row gate after every LoRA A MatMul of `model` (an onnx ModelProto, changed in
    place); the LoRA inputs' default (rank-0) shapes and their dtype, or None when the graph
    has no LoRA inputs."""
    from onnx import helper, numpy_helper

    graph = model.graph
    defaults = {init.name: init for init in graph.initializer if is_lora_name(init.name)}
    if not defaults:
        return None
    shapes = {name: tuple(init.dims) for name, init in defaults.items()}
    dtype = helper.tensor_dtype_to_np_dtype(next(iter(defaults.values())).data_type)
    a_names = {name for name in defaults if ".lora_A." in name}
    nodes, gated = (
        [],
        {},
    )  # gated: an A MatMul's output -> its gate's output, which its consumers read instead
    for node in graph.node:
        node.input[:] = [gated.get(name, name) for name in node.input]  # producers come first in ONNX
        nodes.append(node)
        if node.op_type == "MatMul" and node.input[1] in a_names:
            gated[node.output[0]] = f"{node.output[0]}/gated"
            nodes.append(
                helper.make_node(
                    "Mul", [node.output[0], GATE], [gated[node.output[0]]], name=f"{node.name}/RowGate"
                )
            )
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.append(
        helper.make_tensor_value_info(
            GATE, helper.np_dtype_to_tensor_dtype(dtype), ["batch_size", 1, "lora_rank"]
        )
    )
    # The gate's default (rank 0) lets a run without adapters leave it out.
    graph.initializer.append(numpy_helper.from_array(np.zeros((1, 1, 0), dtype=dtype), GATE))
    return shapes, dtype


class LoraMix:
    """The LoRA inputs (and gate) to feed for a batch, given each row's adapter."""

    def __init__(
        self,
        shapes: dict[str, tuple[int, ...]],
        dtype: np.dtype,
        adapter_files: dict[str, Path],
        precision: AdapterPrecision | None = None,
    ):
        self.shapes, self.dtype = shapes, dtype
        self.tensors: dict[str, dict[str, np.ndarray]] = {}
        self.ranks: dict[str, int] = {}
        for name, file in adapter_files.items():
            # The LoRA switch's flag is not fed: the batcher runs the graph with its switch inlined.
            # Matrices stored at a lower precision are fed as the float values the model's
            # decoders would make of them (the batcher runs the graph without its decoders).
            stored = decode(read_adapter_file(file), precision or AdapterPrecision())
            tensors = {key: value for key, value in stored.items() if key != SWITCH}
            unknown = sorted(set(tensors) - set(shapes))
            if unknown:
                raise OlivepressError(
                    f"adapter {name} ({file}) has tensors the model has no input for, e.g. {unknown[0]}"
                )
            self.tensors[name] = tensors
            self.ranks[name] = max(t.shape[1] for key, t in tensors.items() if ".lora_A." in key)
        self._cache: dict[tuple[str, ...], dict[str, np.ndarray]] = {}

    def feed(self, row_adapters: list[str]) -> dict[str, np.ndarray]:
        """Inputs for a batch whose row b runs adapter row_adapters[b] (BASE: none)."""
        present = tuple(sorted({a for a in row_adapters if a != BASE}))
        weights = self._weights(present)
        if len(set(row_adapters)) == 1:
            # One adapter for every row (or none): its own tensors, as ORT GenAI feeds them.
            gate = np.ones((len(row_adapters), 1, self.ranks[present[0]] if present else 0), dtype=self.dtype)
        else:
            offsets, start = {}, 0
            for adapter in present:
                offsets[adapter] = (start, start + self.ranks[adapter])
                start += self.ranks[adapter]
            gate = np.zeros((len(row_adapters), 1, start), dtype=self.dtype)
            for b, adapter in enumerate(row_adapters):
                if adapter != BASE:
                    gate[b, 0, slice(*offsets[adapter])] = 1
        return {**weights, GATE: gate}

    def _weights(self, adapters: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The adapters' A side by side and B stacked, each padded to its adapter's rank
        (zeros where an adapter has no tensor for a layer); empty for no adapter."""
        if adapters not in self._cache:
            joined = {}
            if adapters:
                for name, shape in self.shapes.items():
                    is_a = ".lora_A." in name
                    parts = []
                    for adapter in adapters:
                        rank = self.ranks[adapter]
                        part = np.zeros((shape[0], rank) if is_a else (rank, shape[1]), dtype=self.dtype)
                        tensor = self.tensors[adapter].get(name)
                        if tensor is not None:
                            part[: tensor.shape[0], : tensor.shape[1]] = tensor
                        parts.append(part)
                    joined[name] = np.ascontiguousarray(np.concatenate(parts, axis=1 if is_a else 0))
            self._cache[adapters] = joined
        return self._cache[adapters]

"""The weights an ORT GenAI model holds quantized, read back as float, to give a PyTorch model
the same grid (the hand-over check compares the conversion, not the quantization).

The builder (or a pass before it) stores a quantized Linear as a MatMulNBits node: codes B
[N, blocks, block_size * bits / 8] (uint8, the first code of a byte in its low bits), scales
[N * blocks] and optional zero points (else 2**(bits - 1)); a quantized embedding is a
GatherBlockQuantized over codes of the same layout. Whichever quantizer wrote them (ONNX
Runtime's RTN, AWQ or GPTQ integers kept from a checkpoint), w = (q - z) * s is the weight the
ONNX model multiplies by, so this reads the codes rather than re-quantizing PyTorch's weights,
which would repeat one quantizer's rounding but not another's.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Builder node name -> PyTorch module, and the fused projections the builder may write.
_LAYER = re.compile(r"^/model/layers\.(\d+)/(attn|mlp)/(\w+)/")
_FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
_ACTIVATIONS = {0: "fp32", 1: "fp32", 2: "fp16", 3: "bf16", 4: "int8"}


@dataclass
class QuantizedWeights:
    """Float values of the quantized weights, by PyTorch module name (fused ones still fused),
    and the activation precision of each MatMulNBits (its accuracy level)."""

    weights: dict[str, np.ndarray] = field(default_factory=dict)  # module -> [out, in]
    accuracy_levels: Counter = field(default_factory=Counter)

    def activation_summary(self) -> str:
        """What the quantized MatMuls compute in, e.g. "int8 activations (accuracy level 4) in 211 of 211"."""
        total = sum(self.accuracy_levels.values())
        parts = [
            f"{_ACTIVATIONS.get(level, '?')} activations (accuracy level {level}) in {count} of {total}"
            for level, count in sorted(self.accuracy_levels.items())
        ]
        return "; ".join(parts) + " quantized MatMuls" if parts else "no quantized MatMuls"


def dequantize_blocks(
    codes: np.ndarray,
    scales: np.ndarray,
    zeros: np.ndarray | None,
    *,
    rows: int,
    columns: int,
    bits: int,
    block_size: int,
) -> np.ndarray:
    """[rows, columns] float32 from MatMulNBits-layout codes, per-block scales and zero points."""
    import torch

    from olivepress.quant.grid import dequantize

    blocks = -(-columns // block_size)
    packed = codes.reshape(rows, -1).astype(np.uint8)
    if bits == 4:
        values = np.stack([packed & 15, packed >> 4], axis=-1).reshape(rows, -1)
    elif bits == 8:
        values = packed
    else:
        raise ValueError(f"{bits}-bit MatMulNBits weights are not read here")
    values = values[:, :columns].astype(np.int32)
    scale = scales.reshape(rows, blocks).astype(np.float32)
    if zeros is None:
        zero = np.full((rows, blocks), 2 ** (bits - 1), dtype=np.int32)
    elif zeros.dtype == np.uint8 and bits == 4:
        zero = np.stack([zeros & 15, zeros >> 4], axis=-1).reshape(rows, -1)[:, :blocks].astype(np.int32)
    else:
        zero = zeros.reshape(rows, blocks).astype(np.int32)
    g_idx = torch.arange(columns, dtype=torch.int32) // block_size
    weight = dequantize(torch.from_numpy(values), torch.from_numpy(scale), torch.from_numpy(zero), g_idx)
    return weight.numpy()


def module_name(node_name: str) -> str | None:
    """The PyTorch module a builder node belongs to (None for nodes of no weight)."""
    if node_name.startswith("/lm_head/"):
        return "lm_head"
    if node_name.startswith("/model/embed_tokens/"):
        return "model.embed_tokens"
    match = _LAYER.match(node_name)
    if match is None:
        return None
    layer, block, module = match.groups()
    return f"model.layers.{layer}.{'self_attn' if block == 'attn' else 'mlp'}.{module}"


def read_quantized_weights(model_file: Path) -> QuantizedWeights:
    """Every MatMulNBits / GatherBlockQuantized weight of `model_file` as float, by module."""
    import onnx
    from onnx import numpy_helper

    from olivepress.runtime.lora_switch import branch_nodes

    model = onnx.load(str(model_file))
    graph = model.graph
    tensors = {init.name: init for init in graph.initializer}
    nodes = branch_nodes(graph)
    producers = {output: node for node in nodes for output in node.output}

    def array(name: str) -> np.ndarray | None:
        if not name:
            return None
        if name in tensors:
            return numpy_helper.to_array(tensors[name])
        producer = producers.get(name)  # the tied embedding reads lm_head's codes through a Reshape
        if producer is not None and producer.op_type == "Reshape":
            return array(producer.input[0])
        return None

    found = QuantizedWeights()
    for node in nodes:
        attrs = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
        module = module_name(node.name)
        if node.op_type == "MatMulNBits":
            found.accuracy_levels[int(attrs.get("accuracy_level", 0))] += 1
            codes = array(node.input[1])
            if module is None or codes is None:
                continue
            zeros = array(node.input[3]) if len(node.input) > 3 else None
            found.weights[module] = dequantize_blocks(
                codes,
                array(node.input[2]),
                zeros,
                rows=attrs["N"],
                columns=attrs["K"],
                bits=attrs["bits"],
                block_size=attrs["block_size"],
            )
        elif node.op_type == "GatherBlockQuantized" and module is not None:
            codes = array(node.input[0])
            if codes is None or attrs.get("quantize_axis", 1) != 1 or attrs.get("gather_axis", 0) != 0:
                continue
            scales = array(node.input[2])
            zeros = array(node.input[3]) if len(node.input) > 3 else None
            # Codes and scales may be lm_head's own MatMulNBits tensors ([N, blocks, blob] and
            # [N * blocks]) reached through a Reshape: the first axis is the rows either way.
            rows = codes.shape[0]
            columns = codes.size * 8 // attrs.get("bits", 4) // rows
            found.weights[module] = dequantize_blocks(
                codes,
                scales,
                zeros,
                rows=rows,
                columns=columns,
                bits=attrs.get("bits", 4),
                block_size=attrs["block_size"],
            )
    return found


def put_weights(torch_model, weights: dict[str, np.ndarray]) -> list[str]:
    """Give `torch_model`'s Linear / Embedding modules these weights (fused ones split by the
    modules' sizes; tied weights untied, each module gets its own); returns the modules set.
    Modules that are not plain float layers (an AWQ / GPTQ kernel) keep their own integers,
    which the builder copied as they are."""
    import torch

    modules = dict(torch_model.named_modules())
    prefix = "base_model.model." if "base_model.model.lm_head" in modules else ""
    changed = []
    for name, weight in weights.items():
        parts = name.rsplit(".", 1)
        targets = [name]
        if len(parts) == 2 and parts[1] in _FUSED:
            targets = [f"{parts[0]}.{piece}" for piece in _FUSED[parts[1]]]
        start = 0
        for target in targets:
            module = modules.get(prefix + target)
            base = getattr(module, "base_layer", module)  # a PEFT-wrapped Linear
            if not isinstance(base, torch.nn.Linear | torch.nn.Embedding):
                break
            rows = base.weight.shape[0]
            piece = torch.from_numpy(np.ascontiguousarray(weight[start : start + rows]))
            start += rows
            if piece.shape != base.weight.shape:
                break
            base.weight = torch.nn.Parameter(piece.to(base.weight.dtype), requires_grad=False)
            changed.append(target)
    return changed

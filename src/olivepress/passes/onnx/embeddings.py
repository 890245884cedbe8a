"""The token-embedding lookup and the LM head of a decoder ONNX model, and quantized forms of
the lookup: GatherBlockQuantized (com.microsoft) on its own integers, or on lm_head's
MatMulNBits integers when the model ties the two (one copy of the weights instead of two).

MatMulNBits stores B as [N, K / block, block * bits / 8] uint8 (K padded to whole blocks), scales
as N x K / block, zero points as N x K / block values (two per byte at 4 bits); a Reshape of B to
[N, K_padded * bits / 8] is exactly the data GatherBlockQuantized takes with gather_axis 0 and
quantize_axis 1, with the same scales and zero points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from olivepress.errors import OlivepressError

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from olivepress.quant.grid import Grid

MS_DOMAIN = "com.microsoft"


@dataclass
class Lookup:
    node: onnx.NodeProto
    weight: str  # the float initializer [vocab, hidden] of a Gather


@dataclass
class Head:
    node: onnx.NodeProto
    op_type: str  # MatMulNBits or MatMul


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {init.name: init for init in model.graph.initializer}


def find_lookup(model: onnx.ModelProto) -> onnx.NodeProto | None:
    """The Gather / GatherBlockQuantized node that reads input_ids."""
    for node in model.graph.node:
        if (
            node.op_type in ("Gather", "GatherBlockQuantized")
            and len(node.input) > 1
            and node.input[1] == "input_ids"
        ):
            return node
    return None


def find_head(model: onnx.ModelProto) -> Head | None:
    """The MatMulNBits / MatMul node that writes the logits output."""
    for node in model.graph.node:
        if node.op_type in ("MatMulNBits", "MatMul") and node.output and node.output[0] == "logits":
            return Head(node, node.op_type)
    return None


def _attr(node: onnx.NodeProto, name: str, default: int | None = None) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return attribute.i
    if default is None:
        raise OlivepressError(f"{node.op_type} node {node.name} has no attribute {name}")
    return default


def _unpack_nibbles(packed: np.ndarray) -> np.ndarray:
    import numpy as np

    out = np.empty(packed.shape[:-1] + (packed.shape[-1] * 2,), dtype=np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out


def dequantized_head(model: onnx.ModelProto, head: onnx.NodeProto) -> np.ndarray:
    """lm_head's MatMulNBits weights as float [N, K]."""
    import numpy as np
    from onnx import numpy_helper

    inits = _initializers(model)
    n, k, bits, block = _attr(head, "N"), _attr(head, "K"), _attr(head, "bits", 4), _attr(head, "block_size")
    blocks = -(-k // block)
    data = numpy_helper.to_array(inits[head.input[1]]).reshape(n, -1)
    codes = data if bits == 8 else _unpack_nibbles(data)
    scales = numpy_helper.to_array(inits[head.input[2]]).astype(np.float32).reshape(n, blocks)
    if len(head.input) > 3 and head.input[3]:
        zp = numpy_helper.to_array(inits[head.input[3]]).reshape(n, -1)
        zp = (zp if bits == 8 else _unpack_nibbles(zp))[:, :blocks]
    else:
        zp = np.full((n, blocks), 2 ** (bits - 1), dtype=np.uint8)
    codes = codes[:, : blocks * block].astype(np.float32).reshape(n, blocks, block)
    weight = (codes - zp[:, :, None].astype(np.float32)) * scales[:, :, None]
    return weight.reshape(n, blocks * block)[:, :k]


def _constant(model: onnx.ModelProto, name: str, values: list[int]) -> str:
    import numpy as np
    from onnx import numpy_helper

    if name not in _initializers(model):
        model.graph.initializer.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
    return name


def _replace_lookup(model: onnx.ModelProto, lookup: onnx.NodeProto, nodes: list[onnx.NodeProto]) -> None:
    """Put `nodes` where `lookup` was (they write its output) and drop its weight if unused."""
    graph = model.graph
    index = list(graph.node).index(lookup)
    old_weight = lookup.input[0]
    graph.node.remove(lookup)
    for offset, node in enumerate(nodes):
        graph.node.insert(index + offset, node)
    if not any(old_weight in node.input for node in graph.node):
        for init in list(graph.initializer):
            if init.name == old_weight:
                graph.initializer.remove(init)
        for info in list(graph.value_info):
            if info.name == old_weight:
                graph.value_info.remove(info)


def tie_lookup_to_head(
    model: onnx.ModelProto, lookup: onnx.NodeProto, head: onnx.NodeProto, hidden: int
) -> None:
    """Replace the lookup by GatherBlockQuantized over the head's MatMulNBits integers."""
    from onnx import helper

    n, k, bits, block = _attr(head, "N"), _attr(head, "K"), _attr(head, "bits", 4), _attr(head, "block_size")
    if k != hidden:
        raise OlivepressError(
            f"lm_head has K={k} inputs but the embeddings have {hidden} columns; they cannot be tied"
        )
    blocks = -(-k // block)
    base = lookup.name or "/model/embed_tokens"
    out = lookup.output[0]
    data = f"{base}/TiedData"
    nodes = [
        helper.make_node(
            "Reshape",
            [head.input[1], _constant(model, f"{base}/data_shape", [n, blocks * block * bits // 8])],
            [data],
            name=f"{base}/TiedReshape",
        )
    ]
    scales = f"{base}/TiedScales"
    nodes.append(
        helper.make_node(
            "Reshape",
            [head.input[2], _constant(model, f"{base}/scales_shape", [n, blocks])],
            [scales],
            name=f"{base}/TiedScalesReshape",
        )
    )
    inputs = [data, lookup.input[1], scales]
    if len(head.input) > 3 and head.input[3]:
        zp = f"{base}/TiedZeroPoints"
        nodes.append(
            helper.make_node(
                "Reshape",
                [head.input[3], _constant(model, f"{base}/zp_shape", [n, -1])],
                [zp],
                name=f"{base}/TiedZeroPointsReshape",
            )
        )
        inputs.append(zp)
    gathered = out if blocks * block == k else f"{base}/GatherBlockQuantized/output_0"
    nodes.append(
        helper.make_node(
            "GatherBlockQuantized",
            inputs,
            [gathered],
            name=f"{base}/GatherBlockQuantized",
            domain=MS_DOMAIN,
            bits=bits,
            block_size=block,
            gather_axis=0,
            quantize_axis=1,
        )
    )
    if gathered != out:  # lm_head pads K to whole blocks: cut the padding off
        nodes.append(
            helper.make_node(
                "Slice",
                [
                    gathered,
                    _constant(model, f"{base}/slice_start", [0]),
                    _constant(model, f"{base}/slice_end", [k]),
                    _constant(model, f"{base}/slice_axis", [-1]),
                ],
                [out],
                name=f"{base}/Slice",
            )
        )
    _replace_lookup(model, lookup, nodes)
    _ensure_ms_opset(model)


def quantize_lookup(model: onnx.ModelProto, lookup: onnx.NodeProto, grid: Grid) -> None:
    """Replace a float Gather by GatherBlockQuantized on the weights rounded to `grid` (RTN)."""
    import numpy as np
    import torch
    from onnx import helper, numpy_helper

    from olivepress.quant.grid import quantize_weight

    inits = _initializers(model)
    weight = numpy_helper.to_array(inits[lookup.input[0]])
    vocab, hidden = weight.shape
    if grid.bits not in (4, 8):
        raise OlivepressError(f"GatherBlockQuantized takes 4- or 8-bit weights, not {grid.bits}-bit")
    block = hidden if grid.group_size == -1 else grid.group_size
    if hidden % block or block < 16 or block & (block - 1):
        raise OlivepressError(
            f"embeddings of width {hidden} cannot be split into GatherBlockQuantized blocks of {block}"
        )
    q = quantize_weight(torch.from_numpy(weight.astype(np.float32)), grid)
    codes = q.codes.numpy().astype(np.uint8)
    zeros = q.zeros.numpy().astype(np.uint8)
    if grid.bits == 4:
        codes = codes[:, 0::2] | (codes[:, 1::2] << 4)
        zeros = np.pad(zeros, ((0, 0), (0, zeros.shape[1] % 2)))
        zeros = zeros[:, 0::2] | (zeros[:, 1::2] << 4)
    base = lookup.name or "/model/embed_tokens"
    names = [f"{base}/qweight", f"{base}/scales", f"{base}/zero_points"]
    dtype = weight.dtype
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(codes, names[0]),
            numpy_helper.from_array(q.scales.numpy().astype(dtype), names[1]),
            numpy_helper.from_array(zeros, names[2]),
        ]
    )
    node = helper.make_node(
        "GatherBlockQuantized",
        [names[0], lookup.input[1], names[1], names[2]],
        [lookup.output[0]],
        name=f"{base}/GatherBlockQuantized",
        domain=MS_DOMAIN,
        bits=grid.bits,
        block_size=block,
        gather_axis=0,
        quantize_axis=1,
    )
    _replace_lookup(model, lookup, [node])
    _ensure_ms_opset(model)


def reads_head(model: onnx.ModelProto, lookup: onnx.NodeProto, head: onnx.NodeProto) -> bool:
    """Whether the lookup's data is the head's weights (through a Reshape)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    source = producers.get(lookup.input[0])
    return source is not None and source.op_type == "Reshape" and source.input[0] == head.input[1]


def float_lookup_weight(model: onnx.ModelProto, lookup: onnx.NodeProto) -> np.ndarray | None:
    from onnx import numpy_helper

    if lookup.op_type != "Gather":
        return None
    init = _initializers(model).get(lookup.input[0])
    return None if init is None else numpy_helper.to_array(init)


def _ensure_ms_opset(model: onnx.ModelProto) -> None:
    from onnx import helper

    if not any(opset.domain == MS_DOMAIN for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))

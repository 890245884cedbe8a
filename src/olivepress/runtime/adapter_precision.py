"""How an adapter's LoRA matrices are stored: fp32, fp16, or block-quantized int8 / int4.

The precision is the model's: ExtractAdapters gives the graph one small decoder per LoRA
matrix, and every .onnx_adapter for that model holds the matrices in the decoder's form, so
the file is as small as the precision and ONNX Runtime turns it back into float in the graph:

    fp16   X.fp16.weight                                   ─ Cast ──────────────────────> X
    int8   X.quant.weight (uint8 codes), .scale, .zero_point ─ DequantizeLinear ───────> X
    int4   X.quant.weight (two codes a byte), .scale, .zero_point
             ─ BitwiseAnd 15 / BitShift 4 ─ Concat ─ DequantizeLinear ───────────────> X

where X is the float LoRA A [in, r] or B [r, out] the LoRA MatMul reads, as before. The codes
are quant/grid.py's: one scale and zero point per block of `block_size` values along the
matrix's fixed axis (A's input dim, B's output dim), never along the rank, so adapters of any
rank fit the same model and the batcher can lay several side by side. An int4 byte holds a
code from the first half of that axis (low nibble) and the matching one from the second half
(high nibble): unpacking is one Concat, with no reshape that would need the rank. ONNX
Runtime's AdapterFormat cannot read int4 tensors, hence the packing into uint8.

Decoding in numpy (`decode`) gives bit for bit what the graph computes: (q - z) * s is exact
in float32 before its one rounding, which both do alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from olivepress.errors import OlivepressError

if TYPE_CHECKING:
    import numpy as np
    from onnx import ModelProto

PRECISIONS = ("fp32", "fp16", "int8", "int4")
BLOCK_SIZES = (16, 32, 64, 128, 256)
DEFAULT_BLOCK_SIZE = 32
_META_PRECISION, _META_BLOCK = "olivepress.adapter_precision", "olivepress.adapter_block_size"
_DECODER = "/lora_decode/"  # name prefix of the decoder nodes (the batcher takes them out again)
_LOW_MASK, _SHIFT = "/lora_decode/mask_15", "/lora_decode/shift_4"
_WEIGHT = ".weight"


@dataclass(frozen=True)
class AdapterPrecision:
    """A storage precision for LoRA matrices; `block_size` matters for int8 and int4 only."""

    name: str = "fp32"
    block_size: int = DEFAULT_BLOCK_SIZE

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise OlivepressError(
                f"adapter precision '{self.name}' is not one of {', '.join(PRECISIONS)}; pick one of those"
            )
        if self.block_size not in BLOCK_SIZES:
            raise OlivepressError(
                f"adapter block size {self.block_size} is not one of {', '.join(map(str, BLOCK_SIZES))}"
            )

    @property
    def bits(self) -> int | None:
        return {"int8": 8, "int4": 4}.get(self.name)

    def stored_names(self, name: str) -> list[str]:
        """The adapter-file names that hold float LoRA matrix `name` at this precision."""
        stem = name.removesuffix(_WEIGHT)
        if self.name == "fp32":
            return [name]
        if self.name == "fp16":
            return [f"{stem}.fp16.weight"]
        return [f"{stem}.quant.weight", f"{stem}.quant.scale", f"{stem}.quant.zero_point"]


def _is_a(name: str) -> bool:
    return ".lora_A." in name


def encode(
    tensors: dict[str, np.ndarray], precision: AdapterPrecision, *, symmetric: bool = True
) -> dict[str, np.ndarray]:
    """Float LoRA matrices (builder names, A [in, r] and B [r, out]) in `precision`'s stored form."""
    import numpy as np

    if precision.name == "fp32":
        return {name: np.ascontiguousarray(t, dtype=np.float32) for name, t in tensors.items()}
    if precision.name == "fp16":
        return {precision.stored_names(name)[0]: t.astype(np.float16) for name, t in tensors.items()}
    import torch

    from olivepress.quant.grid import Grid, quantize_weight

    grid = Grid(bits=precision.bits, group_size=precision.block_size, sym=symmetric)
    stored = {}
    for name, tensor in tensors.items():
        # The grid blocks along a torch weight's second dim: put the fixed axis there.
        rows_by_rank = torch.from_numpy(np.ascontiguousarray(tensor.T if _is_a(name) else tensor)).float()
        if precision.bits == 4 and rows_by_rank.shape[1] % 2:
            raise OlivepressError(
                f"{name} has an odd size ({rows_by_rank.shape[1]}) along its blocks; int4 adapters need even "
                "layer widths: use --adapter_precision int8"
            )
        quantized = quantize_weight(rows_by_rank, grid)
        codes = quantized.codes.numpy().astype(np.uint8)
        scales = quantized.scales.numpy().astype(np.float32)
        zeros = quantized.zeros.numpy().astype(np.uint8)
        if precision.bits == 4:
            half = codes.shape[1] // 2
            codes = codes[:, :half] | (codes[:, half:] << 4)
        if _is_a(name):  # back to A's [in, r] orientation: blocks run down the rows
            codes, scales, zeros = codes.T, scales.T, zeros.T
        weight, scale, zero = precision.stored_names(name)
        stored.update(
            {
                weight: np.ascontiguousarray(codes),
                scale: np.ascontiguousarray(scales),
                zero: np.ascontiguousarray(zeros),
            }
        )
    return stored


def decode(stored: dict[str, np.ndarray], precision: AdapterPrecision) -> dict[str, np.ndarray]:
    """The float matrices an adapter file's tensors stand for (what the graph's decoders compute).
    Tensors that are not LoRA matrices (the switch flag) pass through."""
    import numpy as np

    if precision.name == "fp32":
        return dict(stored)
    floats, seen = {}, set()
    for name in stored:
        for suffix in (".fp16.weight", ".quant.weight"):
            if name.endswith(suffix):
                floats[name.removesuffix(suffix) + _WEIGHT] = name
    for name, first in floats.items():
        parts = precision.stored_names(name)
        seen.update(parts)
        if precision.name == "fp16":
            floats[name] = stored[first].astype(np.float32)
            continue
        codes, scales, zeros = (stored[part] for part in parts)
        axis = 0 if _is_a(name) else 1
        if precision.bits == 4:
            codes = np.concatenate([codes & 15, codes >> 4], axis=axis)
        size = codes.shape[axis]
        zeros = _per_value(zeros, precision.block_size, axis, size).astype(np.int32)
        values = (codes.astype(np.int32) - zeros).astype(np.float32)
        floats[name] = values * _per_value(scales, precision.block_size, axis, size)
    return {**floats, **{name: t for name, t in stored.items() if name not in seen}}


def _per_value(blocks: np.ndarray, block_size: int, axis: int, size: int) -> np.ndarray:
    """A per-block array repeated to one entry per value along `axis` (the last block may be short)."""
    import numpy as np

    return np.repeat(blocks, block_size, axis=axis).take(np.arange(size), axis=axis)


def add_decoders(
    model: ModelProto, names: dict[str, tuple[int, int]], precision: AdapterPrecision, rank_dim: str
) -> dict[str, np.ndarray]:
    """Make `model`'s float LoRA matrices `names` (name -> (fixed size, elem type)) come from
    stored-form inputs through a decoder each; returns those inputs' rank-0 defaults (so the
    model runs with no adapter). The float initializers must already be gone."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    nodes, defaults = [], {}
    for name, (size, elem_type) in names.items():
        axis = 0 if _is_a(name) else 1
        blocks = -(-size // precision.block_size)
        packed = size // 2 if precision.bits == 4 else size
        kinds = (
            [(TensorProto.FLOAT16, size)]
            if precision.name == "fp16"
            else [(TensorProto.UINT8, packed), (elem_type, blocks), (TensorProto.UINT8, blocks)]
        )
        stored = precision.stored_names(name)
        for stored_name, (stored_type, fixed) in zip(stored, kinds, strict=True):
            dims = [fixed, rank_dim] if axis == 0 else [rank_dim, fixed]
            graph.input.append(helper.make_tensor_value_info(stored_name, stored_type, dims))
            empty = (fixed, 0) if axis == 0 else (0, fixed)
            defaults[stored_name] = np.zeros(empty, dtype=helper.tensor_dtype_to_np_dtype(stored_type))
        prefix = f"{_DECODER}{name}"
        if precision.name == "fp16":
            nodes.append(helper.make_node("Cast", stored, [name], to=elem_type, name=f"{prefix}/Cast"))
            continue
        codes = stored[0]
        if precision.bits == 4:
            low, high, codes = f"{prefix}/low", f"{prefix}/high", f"{prefix}/codes"
            nodes += [
                helper.make_node("BitwiseAnd", [stored[0], _LOW_MASK], [low], name=f"{prefix}/BitwiseAnd"),
                helper.make_node(
                    "BitShift", [stored[0], _SHIFT], [high], direction="RIGHT", name=f"{prefix}/BitShift"
                ),
                helper.make_node("Concat", [low, high], [codes], axis=axis, name=f"{prefix}/Concat"),
            ]
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [codes, stored[1], stored[2]],
                [name],
                axis=axis,
                block_size=precision.block_size,
                name=f"{prefix}/DequantizeLinear",
            )
        )
    if precision.bits == 4:
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(15, dtype=np.uint8), _LOW_MASK),
                numpy_helper.from_array(np.array(4, dtype=np.uint8), _SHIFT),
            ]
        )
    # Decoders read graph inputs only: first in the graph, they precede every consumer.
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    _require_opset(model, 21)  # blocked DequantizeLinear
    set_model_precision(model, precision)
    return defaults


def remove_decoders(model: ModelProto, rank_dim: str) -> AdapterPrecision:
    """Undo add_decoders (in place): the float LoRA matrices become inputs again, with rank-0
    defaults. The batcher feeds float matrices it decoded itself (`decode`, bit for bit the
    decoders' output), so it can lay adapters side by side; returns the model's precision."""
    import numpy as np
    from onnx import helper, numpy_helper

    precision = model_precision(model)
    if precision.name == "fp32":
        return precision
    graph = model.graph
    floats = {}  # float name -> (fixed size, axis, elem type), from each DequantizeLinear / Cast
    for node in graph.node:
        if node.name.startswith(_DECODER) and node.op_type in ("DequantizeLinear", "Cast"):
            floats[node.output[0]] = node
    stored = {part for name in floats for part in precision.stored_names(name)}
    inputs = [value for value in graph.input if value.name in stored]
    dims = {value.name: list(value.type.tensor_type.shape.dim) for value in inputs}
    types = {value.name: value.type.tensor_type.elem_type for value in inputs}
    kept = [node for node in graph.node if not node.name.startswith(_DECODER)]
    del graph.node[:]
    graph.node.extend(kept)
    for items in (graph.input, graph.initializer):
        for item in [item for item in items if item.name in stored or item.name in (_LOW_MASK, _SHIFT)]:
            items.remove(item)
    for name, node in floats.items():
        axis = 0 if _is_a(name) else 1
        first = dims[precision.stored_names(name)[0]][axis].dim_value
        size = first * 2 if precision.bits == 4 else first
        # The float type the decoder produced: a Cast's target, a DequantizeLinear's scale type.
        elem_type = (
            next(a.i for a in node.attribute if a.name == "to")
            if node.op_type == "Cast"
            else types[node.input[1]]
        )
        shape = [size, rank_dim] if axis == 0 else [rank_dim, size]
        graph.input.append(helper.make_tensor_value_info(name, elem_type, shape))
        dtype = helper.tensor_dtype_to_np_dtype(elem_type)
        empty = np.zeros((size, 0) if axis == 0 else (0, size), dtype=dtype)
        graph.initializer.append(numpy_helper.from_array(empty, name))
    return precision


def set_model_precision(model: ModelProto, precision: AdapterPrecision) -> None:
    from onnx import helper

    for key in (_META_PRECISION, _META_BLOCK):
        for prop in [p for p in model.metadata_props if p.key == key]:
            model.metadata_props.remove(prop)
    helper.set_model_props(
        model,
        {
            **{p.key: p.value for p in model.metadata_props},
            _META_PRECISION: precision.name,
            _META_BLOCK: str(precision.block_size),
        },
    )


def model_precision(model: ModelProto) -> AdapterPrecision:
    """The adapter precision a model was built for (fp32 for models from before precisions)."""
    props = {p.key: p.value for p in model.metadata_props}
    block_size = int(props.get(_META_BLOCK, DEFAULT_BLOCK_SIZE))
    return AdapterPrecision(props.get(_META_PRECISION, "fp32"), block_size)


def _require_opset(model: ModelProto, version: int) -> None:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, version)
            return
    from onnx import helper

    model.opset_import.append(helper.make_opsetid("", version))

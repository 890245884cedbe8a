"""Quantized HF checkpoints in the AutoAWQ and GPTQ layouts: write them, and read back their
quantized weights (models/loading.py turns them into a float model of the dequantised grid).

A folder holds config.json with a `quantization_config`, safetensors weights (for every
quantized Linear `<name>.qweight/.qzeros/.scales[/.g_idx]`, every other tensor as a float
tensor), and the source folder's tokenizer and generation files.

What each layout can hold is checked before anything is written (the rules: quant/layout.py).
The GPTQ layout carries per-module bits / group size in `dynamic` (GPTQModel's format, which
the ORT GenAI builder reads too; quant/qconfig.py writes it).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from olivepress.errors import OlivepressError
from olivepress.quant.grid import QuantizedWeight
from olivepress.quant.layout import awq_problem, gptq_problem
from olivepress.quant.packing import pack_awq, pack_gptq, unpack_awq, unpack_gptq

if TYPE_CHECKING:
    from transformers import PreTrainedModel

LAYOUTS = ("awq", "gptq")
QUANT_SUFFIXES = ("qweight", "qzeros", "scales", "g_idx")
_WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt")
_SKIP_FILES = {"config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json"}
_SHARD_BYTES = 2 * 1024**3


# --- what a layout can hold -------------------------------------------------------------


def layout_problem(layout: str, name: str, q: QuantizedWeight, group_size: int) -> str | None:
    """Why `layout` cannot hold this quantized weight (None when it can); the rules are
    quant/layout.py's, plus AWQ's lack of act-order, which only a quantized weight shows."""
    if layout == "gptq":
        return gptq_problem(name, bits=q.bits, in_features=q.in_features, out_features=q.out_features)
    problem = awq_problem(
        name,
        bits=q.bits,
        group_size=q.group_size,
        in_features=q.in_features,
        out_features=q.out_features,
        layout_group_size=group_size,
    )
    in_order = torch.arange(q.in_features) // (q.in_features if group_size == -1 else group_size)
    if problem is None and not torch.equal(q.g_idx.long(), in_order):
        return f"{name} was quantized in act-order, which the AWQ layout cannot hold"
    return problem


def check_layout(layout: str, quantized: dict[str, QuantizedWeight], group_size: int) -> None:
    """Raise a clear error when `layout` cannot hold every quantized weight."""
    for name, q in quantized.items():
        problem = layout_problem(layout, name, q, group_size)
        if problem:
            raise OlivepressError(f"cannot write the {layout.upper()} layout: {problem}")


# --- writing ----------------------------------------------------------------------------


def _float_tensors(
    model: PreTrainedModel, quantized: dict[str, QuantizedWeight], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Every tensor of the model except the quantized Linear weights; a tensor that shares
    storage with one already kept (tied embeddings) is written once."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        module_name, _, leaf = name.rpartition(".")
        if module_name in quantized and leaf == "weight":
            continue
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        tensors[name] = tensor.detach().to(dtype) if tensor.is_floating_point() else tensor.detach()
    return tensors


def _write_safetensors(tensors: dict[str, torch.Tensor], out_dir: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > _SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        file_name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out_dir / file_name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file_name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def copy_side_files(source: Path, out_dir: Path) -> None:
    """Tokenizer, generation config, chat template, remote code: everything but weights and config."""
    for path in source.iterdir():
        if path.is_file() and path.name not in _SKIP_FILES and not path.name.endswith(_WEIGHT_FILES):
            shutil.copy2(path, out_dir / path.name)


def save_quantized(
    model: PreTrainedModel,
    quantized: dict[str, QuantizedWeight],
    source: Path,
    out_dir: Path,
    *,
    layout: str,
    quantization_config: dict[str, Any],
    dtype: torch.dtype = torch.float16,
) -> None:
    """Write `model` with the Linear layers in `quantized` packed in `layout` ('awq' / 'gptq').

    The other tensors are written from `model` as they are now (AWQ has folded its scales into
    the norms before them) in `dtype`.
    """
    if layout not in LAYOUTS:
        raise OlivepressError(f"unknown checkpoint layout '{layout}'; use one of {LAYOUTS}")
    check_layout(layout, quantized, quantization_config["group_size"])
    out_dir.mkdir(parents=True, exist_ok=True)

    tensors = _float_tensors(model, quantized, dtype)
    pack = pack_awq if layout == "awq" else pack_gptq
    for name, q in quantized.items():
        for suffix, tensor in pack(q).items():
            tensors[f"{name}.{suffix}"] = tensor
    _write_safetensors(tensors, out_dir)

    config = json.loads((source / "config.json").read_text())
    config["quantization_config"] = quantization_config
    config["dtype"] = str(dtype).removeprefix("torch.")
    config.pop("torch_dtype", None)
    if config.get("tie_word_embeddings") and "lm_head" in quantized:
        config["tie_word_embeddings"] = False  # lm_head now has its own (quantized) weights
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    copy_side_files(source, out_dir)


# --- reading ----------------------------------------------------------------------------


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise OlivepressError(
            f"{folder} has no .safetensors weights; quantized checkpoints are read from safetensors only"
        )
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(load_file(str(file)))
    return tensors


def _override(dynamic: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    for pattern, settings in (dynamic or {}).items():
        if pattern.startswith("-:"):
            continue
        if re.match(pattern.removeprefix("+:"), name):
            return settings
    return {}


def read_quantized(
    folder: Path,
) -> tuple[dict[str, QuantizedWeight], dict[str, torch.Tensor], dict[str, Any]]:
    """(quantized Linear weights by module name, the other tensors, quantization_config)."""
    config = json.loads((folder / "config.json").read_text())
    qconfig = config.get("quantization_config") or {}
    method = str(qconfig.get("quant_method", "")).lower()
    if method not in LAYOUTS:
        raise OlivepressError(
            f"{folder} is quantized with '{method}'; olivepress reads the AWQ and GPTQ layouts only"
        )
    if method == "gptq" and qconfig.get("checkpoint_format", "gptq") not in ("gptq", None):
        raise OlivepressError(
            f"{folder} uses GPTQ checkpoint_format '{qconfig['checkpoint_format']}'; "
            "olivepress reads 'gptq' (v1) only"
        )
    if method == "awq" and str(qconfig.get("version", "gemm")).lower() != "gemm":
        raise OlivepressError(
            f"{folder} uses AWQ version '{qconfig['version']}'; olivepress reads 'gemm' only"
        )

    tensors = _read_tensors(folder)
    bits = int(qconfig.get("bits", qconfig.get("w_bit", 4)))
    group_size = int(qconfig.get("group_size", qconfig.get("q_group_size", 128)))
    prefixes = [k.removesuffix(".qweight") for k in tensors if k.endswith(".qweight")]
    quantized: dict[str, QuantizedWeight] = {}
    for prefix in prefixes:
        parts = {s: tensors.pop(f"{prefix}.{s}", None) for s in QUANT_SUFFIXES}
        if method == "awq":
            quantized[prefix] = unpack_awq(
                parts["qweight"], parts["qzeros"], parts["scales"], group_size, bits
            )
            continue
        settings = _override(qconfig.get("dynamic"), prefix)
        b, g = int(settings.get("bits", bits)), int(settings.get("group_size", group_size))
        g_idx = parts["g_idx"]
        if g_idx is None:
            in_features = parts["qweight"].shape[0] * 32 // b
            g_idx = torch.arange(in_features) // (in_features if g == -1 else g)
        quantized[prefix] = unpack_gptq(parts["qweight"], parts["qzeros"], parts["scales"], g_idx, b, g)
    return quantized, tensors, qconfig

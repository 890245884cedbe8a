"""Quantized HF checkpoints in the AutoAWQ and GPTQ layouts: write them, and read them back
as float weights that are exactly the dequantised grid.

A folder holds config.json with a `quantization_config`, safetensors weights (for every
quantized Linear `<name>.qweight/.qzeros/.scales[/.g_idx]`, every other tensor as a float
tensor), and the source folder's tokenizer and generation files.

What each layout can hold (checked before anything is written):

- AWQ (AutoAWQ GEMM): 4 bits, one group size for every quantized Linear, and in_features a
  multiple of it (AutoAWQ's WQLinear_GEMM and the ORT GenAI builder's AWQ loader both assume
  whole groups). No per-module settings.
- GPTQ: 2/4/8 bits; a short last group (ceil(in / G) groups, g_idx says which); act-order;
  per-module bits / group size in `dynamic` (GPTQModel's format, which the ORT GenAI builder
  reads too); modules left float listed as `-:` patterns in `dynamic`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from olivepress.errors import OlivepressError
from olivepress.quant.grid import QuantizedWeight
from olivepress.quant.packing import pack_awq, pack_gptq, unpack_awq, unpack_gptq

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from olivepress.models.handles import HfModel

LAYOUTS = ("awq", "gptq")
QUANT_SUFFIXES = ("qweight", "qzeros", "scales", "g_idx")
_WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt")
_SKIP_FILES = {"config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json"}
_SHARD_BYTES = 2 * 1024**3


# --- what a layout can hold -------------------------------------------------------------


def fitting_group_sizes(in_features: int, candidates: Iterable[int] = (256, 128, 64, 32, 16)) -> list[int]:
    return [g for g in candidates if in_features % g == 0] + [-1]


def awq_layout_problem(name: str, q: QuantizedWeight, group_size: int) -> str | None:
    """Why the AWQ GEMM layout cannot hold this weight (None when it can)."""
    if q.bits != 4:
        return f"{name} is {q.bits}-bit; the AWQ GEMM layout holds 4-bit weights only"
    if q.group_size != group_size:
        return f"{name} uses group size {q.group_size} but the AWQ layout has one group size ({group_size}) for all layers"
    if q.out_features % 8:
        return f"{name} has out_features={q.out_features}, not a multiple of 8"
    if group_size != -1 and q.in_features % group_size:
        fits = ", ".join(str(g) for g in fitting_group_sizes(q.in_features))
        return (
            f"{name} has in_features={q.in_features}, not a multiple of group size {group_size} "
            f"(AutoAWQ and the ORT GenAI builder need whole groups); group sizes that fit: {fits}"
        )
    if not torch.equal(q.g_idx.long(), torch.arange(q.in_features) // (q.in_features if group_size == -1 else group_size)):
        return f"{name} was quantized in act-order, which the AWQ layout cannot hold"
    return None


def gptq_layout_problem(name: str, q: QuantizedWeight) -> str | None:
    per_word = 32 // q.bits
    if 32 % q.bits:
        return f"{name} is {q.bits}-bit; the GPTQ layout packs 2, 4 or 8 bits"
    if q.in_features % per_word or q.out_features % per_word:
        return f"{name} is {q.out_features}x{q.in_features}; the GPTQ layout needs both multiples of {per_word}"
    return None


def check_layout(layout: str, quantized: dict[str, QuantizedWeight], group_size: int) -> None:
    """Raise a clear error when `layout` cannot hold every quantized weight."""
    for name, q in quantized.items():
        problem = awq_layout_problem(name, q, group_size) if layout == "awq" else gptq_layout_problem(name, q)
        if problem:
            raise OlivepressError(f"cannot write the {layout.upper()} layout: {problem}")


# --- quantization_config ----------------------------------------------------------------


def awq_config(*, group_size: int, modules_to_not_convert: list[str], meta: dict[str, Any]) -> dict[str, Any]:
    # Symmetric grids are stored with z = 8, so the layout always carries zero points.
    return {
        "quant_method": "awq",
        "bits": 4,
        "group_size": group_size,
        "zero_point": True,
        "version": "gemm",
        "modules_to_not_convert": modules_to_not_convert or None,
        "meta": meta,
    }


def gptq_config(
    *,
    bits: int,
    group_size: int,
    sym: bool,
    desc_act: bool,
    damp_percent: float,
    dynamic: dict[str, dict[str, Any]],
    lm_head: bool,
    meta: dict[str, Any],
) -> dict[str, Any]:
    return {
        "quant_method": "gptq",
        "checkpoint_format": "gptq",
        "bits": bits,
        "group_size": group_size,
        "sym": sym,
        "desc_act": desc_act,
        "damp_percent": damp_percent,
        "true_sequential": False,
        "static_groups": False,
        "lm_head": lm_head,
        "dynamic": dynamic or None,
        "meta": meta,
    }


def _name_pattern(name: str) -> str:
    # `\b` instead of `$`: GPTQModel matches module names, the ORT GenAI builder matches
    # tensor names ("...q_proj.qweight"); re.match with a word boundary serves both.
    return re.escape(name) + r"\b"


def _generalise(names: list[str], all_names: list[str]) -> list[str]:
    """Patterns covering `names`: one per module kind with the layer index as \\d+ where every
    layer's module of that kind is in `names`, the exact name otherwise."""
    chosen = set(names)
    by_kind: dict[str, list[str]] = {}
    for name in names:
        by_kind.setdefault(re.sub(r"\.\d+\.", ".#.", name, count=1), []).append(name)
    patterns = []
    for kind, members in by_kind.items():
        siblings = [n for n in all_names if re.sub(r"\.\d+\.", ".#.", n, count=1) == kind]
        if "#" in kind and set(siblings) <= chosen and len(members) > 1:
            patterns.append(r"\.".join(r"\d+" if p == "#" else re.escape(p) for p in kind.split(".")) + r"\b")
        else:
            patterns.extend(_name_pattern(n) for n in members)
    return patterns


def gptq_dynamic(
    quantized: dict[str, QuantizedWeight], float_linears: list[str], bits: int, group_size: int, sym: bool,
    sym_of: dict[str, bool],
) -> dict[str, dict[str, Any]]:
    """GPTQModel's per-module overrides: `+:pattern` -> settings that differ from the global
    ones, `-:pattern` -> a module left in float."""
    groups: dict[tuple, list[str]] = {}
    for name, q in quantized.items():
        key = (q.bits, q.group_size, sym_of.get(name, sym))
        if key != (bits, group_size, sym):
            groups.setdefault(key, []).append(name)
    dynamic: dict[str, dict[str, Any]] = {}
    all_names = list(quantized) + list(float_linears)
    for (b, g, s), names in groups.items():
        for pattern in _generalise(names, all_names):
            dynamic["+:" + pattern] = {"bits": b, "group_size": g, "sym": s}
    for pattern in _generalise(float_linears, all_names):
        dynamic["-:" + pattern] = {}
    return dynamic


# --- writing ----------------------------------------------------------------------------


def _float_tensors(model: PreTrainedModel, quantized: dict[str, QuantizedWeight], dtype: torch.dtype) -> dict[str, torch.Tensor]:
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
        raise OlivepressError(f"{folder} has no .safetensors weights; quantized checkpoints are read from safetensors only")
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


def read_quantized(folder: Path) -> tuple[dict[str, QuantizedWeight], dict[str, torch.Tensor], dict[str, Any]]:
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
            f"{folder} uses GPTQ checkpoint_format '{qconfig['checkpoint_format']}'; olivepress reads 'gptq' (v1) only"
        )
    if method == "awq" and str(qconfig.get("version", "gemm")).lower() != "gemm":
        raise OlivepressError(f"{folder} uses AWQ version '{qconfig['version']}'; olivepress reads 'gemm' only")

    tensors = _read_tensors(folder)
    bits = int(qconfig.get("bits", qconfig.get("w_bit", 4)))
    group_size = int(qconfig.get("group_size", qconfig.get("q_group_size", 128)))
    prefixes = [k.removesuffix(".qweight") for k in tensors if k.endswith(".qweight")]
    quantized: dict[str, QuantizedWeight] = {}
    for prefix in prefixes:
        parts = {s: tensors.pop(f"{prefix}.{s}", None) for s in QUANT_SUFFIXES}
        if method == "awq":
            quantized[prefix] = unpack_awq(parts["qweight"], parts["qzeros"], parts["scales"], group_size, bits)
            continue
        settings = _override(qconfig.get("dynamic"), prefix)
        b, g = int(settings.get("bits", bits)), int(settings.get("group_size", group_size))
        g_idx = parts["g_idx"]
        if g_idx is None:
            in_features = parts["qweight"].shape[0] * 32 // b
            g_idx = torch.arange(in_features) // (in_features if g == -1 else g)
        quantized[prefix] = unpack_gptq(parts["qweight"], parts["qzeros"], parts["scales"], g_idx, b, g)
    return quantized, tensors, qconfig


def load_dequantized(model: HfModel, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """An AWQ / GPTQ folder as a float causal LM whose Linear weights are the dequantised grid."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    dtype = dtype or torch.float32
    trust = bool(model.load_kwargs.get("trust_remote_code", False))
    quantized, tensors, _ = read_quantized(model.folder)
    config = AutoConfig.from_pretrained(model.path, trust_remote_code=trust)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with no_init_weights():
        lm = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust)
    state = {name: t.to(dtype) if t.is_floating_point() else t for name, t in tensors.items()}
    for name, q in quantized.items():
        # float32 holds the grid exactly; a narrower dtype rounds it as loading would anyway
        state[f"{name}.weight"] = q.dequantize().to(dtype)
    missing, unexpected = lm.load_state_dict(state, strict=False)
    tied = set(getattr(lm, "all_tied_weights_keys", None) or {}) | {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise OlivepressError(
            f"{model.path} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}; "
            "the checkpoint is incomplete or was written for another architecture"
        )
    if config.tie_word_embeddings:
        lm.tie_weights()
    return lm.eval()

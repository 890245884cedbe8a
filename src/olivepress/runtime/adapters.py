"""LoRA adapters as ONNX Runtime `.onnx_adapter` files for models built by the ORT GenAI builder.

The builder writes a LoRA'd Linear as ``x @ W + (x @ A) @ B`` with float initializers named
``model.layers.{i}.{attn|mlp}.{module}.lora_{A|B}.MatMul.weight``, shaped [in, r] and
[r, out], where B already carries the adapter's scaling. ExtractAdapters turns those
initializers into graph inputs whose default is a rank-0 tensor (so the model runs, and the
LoRA path adds nothing, when no adapter is active); an adapter file holds the real tensors
under the same names, and ORT feeds them as inputs when the adapter is active.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from olivepress.errors import OlivepressError

if TYPE_CHECKING:
    import numpy as np

ADAPTER_FILE = "adapter_weights.onnx_adapter"
MANIFEST = "adapters.json"  # adapter name -> file, beside the model, so generate/serve find them
RANK_DIM = "lora_rank"
SWITCH = "lora_enabled"  # the If condition of a model whose LoRA paths are switched (runtime/lora_switch.py)
# A LoRA matrix's name, and the names it is stored under at other precisions (adapter_precision.py).
_ONNX_NAME = re.compile(
    r"^model\.layers\.(\d+)\.(attn|mlp)\.(\w+)\.lora_([AB])\.MatMul\."
    r"(weight|fp16\.weight|quant\.weight|quant\.scale|quant\.zero_point)$"
)
_PEFT_NAME = re.compile(r"layers\.(\d+)\.(self_attn|attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


def is_lora_name(name: str) -> bool:
    return _ONNX_NAME.match(name) is not None


def lora_node_names(num_layers: int, target_modules: list[str]) -> list[str]:
    """Names the builder gives LoRA MatMul nodes, to keep them out of int4 quantisation."""
    return [
        f"/model/layers.{layer}/{block}/{module}/lora_{ab}/MatMul"
        for layer in range(num_layers)
        for block in ("attn", "mlp")
        for module in target_modules
        for ab in ("A", "B")
    ]


def peft_adapter_config(adapter_dir: Path) -> dict:
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        raise OlivepressError(f"{adapter_dir} is not a PEFT adapter folder: it has no adapter_config.json")
    config = json.loads(config_file.read_text())
    kind = str(config.get("peft_type", "LORA")).upper()
    if kind != "LORA" or config.get("use_dora"):
        method = "DoRA" if config.get("use_dora") else kind
        raise OlivepressError(
            f"{adapter_dir} is a {method} adapter; only LoRA adapters can be switched at run time in ONNX "
            "(fold this one into the model with MergeAdapterWeights instead)"
        )
    return config


def peft_to_onnx_tensors(
    adapter_dir: Path, dtype: np.dtype, model_config: dict | None = None
) -> dict[str, np.ndarray]:
    """A PEFT LoRA adapter's tensors under the builder's names, transposed and scaled.

    `model_config` (the base's config.json or the built model's genai_config.json) names the
    architecture: a LoRA on a fused Linear (Phi-3's qkv_proj) becomes one LoRA per layer the
    builder splits it into, each with the shared A and its rows of B."""
    import numpy as np
    from safetensors.numpy import load_file

    from olivepress.models.families import attention_heads, find_family

    config = peft_adapter_config(adapter_dir)
    weights_file = adapter_dir / "adapter_model.safetensors"
    if not weights_file.is_file():
        raise OlivepressError(
            f"{adapter_dir} has no adapter_model.safetensors; save the adapter with safetensors"
        )
    family = find_family(model_config) if model_config else None
    tensors: dict[str, np.ndarray] = {}
    for key, value in load_file(weights_file).items():
        match = _PEFT_NAME.search(key)
        if match is None:
            continue
        layer, block, module, ab = match.groups()
        block = "attn" if block in ("self_attn", "attn") else block
        matrix = value.astype(np.float32).T  # torch Linear [out, in] -> MatMul [in, out]
        if ab == "B":
            matrix = matrix * _scaling(config, module, rank=matrix.shape[0])
        fused = family.fused_linear(module) if family else None
        if fused is None:
            parts = [(module, matrix)]
        elif ab == "A":
            parts = [(part, matrix) for part in fused.parts]
        else:
            rows = fused.part_rows(matrix.shape[1], *attention_heads(model_config))
            parts = list(zip(fused.parts, np.split(matrix, np.cumsum(rows)[:-1], axis=1), strict=True))
        for part, part_matrix in parts:
            name = f"model.layers.{layer}.{block}.{part}.lora_{ab}.MatMul.weight"
            tensors[name] = np.ascontiguousarray(part_matrix.astype(dtype))
    if not tensors:
        raise OlivepressError(f"{adapter_dir} holds no LoRA A/B weights of decoder layers")
    return tensors


def _scaling(config: dict, module: str, rank: int) -> float:
    alpha = config.get("lora_alpha", rank)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.search(pattern, module):
            alpha = value
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def switch_on() -> dict[str, np.ndarray]:
    """The parameter every adapter file of a switched model carries: it selects the LoRA branch."""
    import numpy as np

    return {SWITCH: np.ones([1], dtype=np.float32)}


def has_lora_switch(model_file: Path) -> bool:
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    return any(value.name == SWITCH for value in graph.input)


def check_switch_flag(adapter_file: Path, model_dir: Path, switched: bool) -> None:
    """An adapter file must carry the switch flag exactly when its model has the switch
    (`switched`: has_lora_switch of the model): without it, a switched model would run its base
    branch and silently ignore the adapter."""
    flagged = SWITCH in read_adapter_file(adapter_file)
    if switched and not flagged:
        raise OlivepressError(
            f"adapter {adapter_file} was converted for a model without the LoRA switch; convert it for "
            f"{model_dir} with olivepress convert-adapters"
        )
    if flagged and not switched:
        raise OlivepressError(
            f"adapter {adapter_file} was converted for a model with the LoRA switch, and {model_dir} has "
            "none; convert it for this model with olivepress convert-adapters"
        )


def model_lora_inputs(model_file: Path) -> dict[str, tuple[int, int, int]]:
    """The LoRA inputs of an extracted model: name -> (onnx elem type, fixed dim, which dim is fixed)."""
    import onnx

    graph = onnx.load(model_file, load_external_data=False).graph
    inputs = {}
    for value in graph.input:
        if is_lora_name(value.name):
            dims = value.type.tensor_type.shape.dim
            fixed_axis = 0 if dims[0].HasField("dim_value") else 1
            inputs[value.name] = (value.type.tensor_type.elem_type, dims[fixed_axis].dim_value, fixed_axis)
    return inputs


def fit_to_model(tensors: dict[str, np.ndarray], model_file: Path, source: str) -> dict[str, np.ndarray]:
    """Check an adapter's tensors against the model's LoRA inputs; modules the adapter does not
    touch get rank-0 tensors (a no-op), so adapters with different targets still load."""
    import numpy as np
    from onnx.helper import tensor_dtype_to_np_dtype

    inputs = model_lora_inputs(model_file)
    if not inputs:
        raise OlivepressError(
            f"{model_file.parent} has no LoRA inputs; build it from a model with an adapter "
            "(auto-opt --adapter_path) so adapters can be switched"
        )
    unknown = sorted(set(tensors) - set(inputs))
    if unknown:
        raise OlivepressError(
            f"adapter {source} targets modules the model has no LoRA path for (e.g. {unknown[0]}); "
            "build the model with an adapter that targets the same modules"
        )
    fitted = {}
    for name, (elem_type, size, axis) in inputs.items():
        dtype = tensor_dtype_to_np_dtype(elem_type)
        if name not in tensors:
            shape = (size, 0) if axis == 0 else (0, size)
            fitted[name] = np.zeros(shape, dtype=dtype)
            continue
        tensor = tensors[name]
        if tensor.shape[axis] != size:
            raise OlivepressError(
                f"adapter {source} does not fit this model: {name} has size {tensor.shape[axis]} where "
                "the model "
                f"has {size}; was it trained on another base model?"
            )
        fitted[name] = tensor.astype(dtype)
    ranks = {tensors[name].shape[1 - inputs[name][2]] for name in tensors}
    if len(ranks) > 1:
        raise OlivepressError(
            f"adapter {source} mixes LoRA ranks {sorted(ranks)}; ONNX adapters need one rank per adapter"
        )
    if has_lora_switch(model_file):
        fitted.update(switch_on())
    return fitted


def write_adapter_file(tensors: dict[str, np.ndarray], path: Path) -> Path:
    """Write tensors with ONNX Runtime's own AdapterFormat."""
    import onnxruntime as ort

    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    adapter.set_parameters({name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in tensors.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    adapter.export_adapter(str(path))
    return path


def read_adapter_file(path: Path) -> dict[str, np.ndarray]:
    import numpy as np
    import onnxruntime as ort

    adapter = ort.AdapterFormat.read_adapter(str(path))
    # The values live in the adapter's own buffer: copy them out while it is still alive.
    tensors = {name: np.array(value.numpy(), copy=True) for name, value in adapter.get_parameters().items()}
    del adapter
    return tensors


def convert_peft_adapter(
    adapter_dir: Path,
    model_dir: Path,
    output_file: Path,
    *,
    precision: str | None = None,
    symmetric: bool = True,
) -> Path:
    """A PEFT LoRA adapter as an .onnx_adapter for an extracted ORT GenAI model, stored at the
    precision the model was built for (`precision`, if given, must be that one)."""
    import numpy as np
    import onnx

    from olivepress.runtime.adapter_precision import AdapterPrecision, encode, model_precision

    target = model_file(model_dir)
    built = model_precision(onnx.load(str(target), load_external_data=False))
    if precision is not None and AdapterPrecision(precision, built.block_size).name != built.name:
        raise OlivepressError(
            f"{model_dir} reads {built.name} adapters, not {precision}; convert with --adapter_precision "
            f"{built.name}, or build the model with auto-opt --adapter_precision {precision}"
        )
    config_file = model_dir / "genai_config.json"
    genai_config = json.loads(config_file.read_text()) if config_file.is_file() else None
    tensors = encode(
        peft_to_onnx_tensors(adapter_dir, np.dtype(np.float32), genai_config), built, symmetric=symmetric
    )
    return write_adapter_file(fit_to_model(tensors, target, str(adapter_dir)), output_file)


def model_file(model_dir: Path) -> Path:
    config_file = model_dir / "genai_config.json"
    if config_file.is_file():
        name = json.loads(config_file.read_text())["model"]["decoder"]["filename"]
        return model_dir / name
    candidates = sorted(model_dir.glob("*.onnx"))
    if not candidates:
        raise OlivepressError(f"{model_dir} holds no ONNX model; pass the model/ folder that auto-opt wrote")
    return candidates[0]


def register_adapter(model_dir: Path, name: str, file_name: str) -> None:
    manifest = model_dir / MANIFEST
    known = json.loads(manifest.read_text()) if manifest.is_file() else {}
    known[name] = file_name
    manifest.write_text(json.dumps(known, indent=2))


def registered_adapters(model_dir: Path) -> dict[str, Path]:
    """Adapters listed in the model folder's adapters.json, as absolute paths."""
    manifest = model_dir / MANIFEST
    if not manifest.is_file():
        return {}
    return {name: model_dir / file for name, file in json.loads(manifest.read_text()).items()}

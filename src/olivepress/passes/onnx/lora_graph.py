"""LoRA paths added to a built ORT GenAI model whose base is an AWQ / GPTQ checkpoint.

The ORT GenAI builder puts a PEFT adapter into the graph only on a float base: for a
quantized checkpoint it loads its own quantized-module model, which PEFT cannot wrap
("'GPTQModel' object has no attribute 'named_modules'"). So on such a base the model is
built alone, with q/k/v kept as separate MatMulNBits (LoRA needs one output per module), and
this adds what the builder writes for a float base, under the builder's names:

    x ─┬─ MatMulNBits (the checkpoint's integers, untouched) ─┐
       └─ MatMul lora_A [in, r] ─ MatMul lora_B [r, out] ─────┴─ Add ─> consumers

ExtractAdapters then lifts the A/B initializers into overridable inputs as for any build.
"""

from __future__ import annotations

import re
from pathlib import Path

from olivepress.errors import OlivepressError
from olivepress.runtime.adapters import peft_to_onnx_tensors

_TENSOR = re.compile(r"^model\.layers\.(\d+)\.(attn|mlp)\.(\w+)\.lora_([AB])\.MatMul\.weight$")


def add_lora_paths(model_file: Path, adapter_dir: Path, model_config: dict) -> int:
    """Add the adapter's LoRA MatMul paths beside the base MatMuls in `model_file` (in place);
    returns how many Linear layers got one. `model_config`: the base's config.json, which
    says how the builder split fused Linears (Phi-3's qkv_proj into q/k/v_proj)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_file))
    graph = model.graph
    base_nodes = {node.name: node for node in graph.node}
    tensors = peft_to_onnx_tensors(adapter_dir, np.float32, model_config)
    paths = sorted({_TENSOR.match(name).groups()[:3] for name in tensors})

    added: dict[str, list] = {}  # base node name -> the LoRA nodes that follow it
    renamed: dict[str, str] = {}  # base output -> the Add's output that replaces it downstream
    initializer_dtype = {init.name: init.data_type for init in graph.initializer}
    for layer, block, module in paths:
        prefix = f"/model/layers.{layer}/{block}/{module}"
        base = base_nodes.get(f"{prefix}/MatMulNBits") or base_nodes.get(f"{prefix}/MatMul")
        if base is None:
            raise OlivepressError(
                f"the built model has no {prefix} MatMul for the adapter's layers.{layer}.{module}; "
                "the adapter targets a module this architecture's ONNX graph does not have separately"
            )
        # The LoRA path computes in the model's activation dtype: that of the base's scales
        # (MatMulNBits) or weight (float MatMul).
        dtype = helper.tensor_dtype_to_np_dtype(
            initializer_dtype[base.input[2 if base.op_type == "MatMulNBits" else 1]]
        )
        stem = f"model.layers.{layer}.{block}.{module}"
        a_name, b_name = f"{stem}.lora_A.MatMul.weight", f"{stem}.lora_B.MatMul.weight"
        graph.initializer.extend(
            [
                numpy_helper.from_array(tensors[a_name].astype(dtype), a_name),
                numpy_helper.from_array(tensors[b_name].astype(dtype), b_name),
            ]
        )
        a_out, b_out, add_out = (
            f"{prefix}/lora_A/MatMul/output_0",
            f"{prefix}/lora_B/MatMul/output_0",
            f"{prefix}/lora/Add/output_0",
        )
        added[base.name] = [
            helper.make_node("MatMul", [base.input[0], a_name], [a_out], name=f"{prefix}/lora_A/MatMul"),
            helper.make_node("MatMul", [a_out, b_name], [b_out], name=f"{prefix}/lora_B/MatMul"),
            helper.make_node("Add", [base.output[0], b_out], [add_out], name=f"{prefix}/lora/Add"),
        ]
        renamed[base.output[0]] = add_out

    ordered = []
    for node in graph.node:
        if node.name not in added:
            node.input[:] = [renamed.get(name, name) for name in node.input]
        ordered.append(node)
        ordered.extend(added.get(node.name, []))
    for output in graph.output:
        output.name = renamed.get(output.name, output.name)
    del graph.node[:]
    graph.node.extend(ordered)
    _save_with_external_data(model, model_file)
    return len(paths)


def _save_with_external_data(model, model_file: Path) -> None:
    """Write the model back where it was, its weights in one external data file as the builder does."""
    import onnx

    data_file = model_file.with_name(model_file.name + ".data")
    data_file.unlink(missing_ok=True)  # every tensor is in memory now; the file is rewritten whole
    onnx.save_model(
        model,
        str(model_file),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_file.name,
        size_threshold=1024,
    )

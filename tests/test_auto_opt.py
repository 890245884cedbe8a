"""auto-opt's LLM path: ORT GenAI models with switchable LoRA adapters, checked against PyTorch."""

from __future__ import annotations

import json

import numpy as np

from olivepress.runtime.adapters import read_adapter_file
from olivepress.runtime.generate import GenAIModel
from olivepress.runtime.lora_switch import branch_nodes
from test_cli import assert_one_line_error, olivepress
from tiny_models import save_tiny_llama, save_tiny_lora_adapter


def test_output_layout_is_what_the_seed_app_expects(tiny_genai_build):
    model = tiny_genai_build / "model"
    for name in ("genai_config.json", "model.onnx", "adapter_weights.onnx_adapter", "tokenizer.json"):
        assert (model / name).is_file(), name
    footprint = json.loads((tiny_genai_build / "footprint.json").read_text())
    assert [n["pass_type"] for n in footprint["nodes"]] == ["ModelBuilder", "ExtractAdapters"]


def test_check_before_hand_over_is_in_the_footprint(tiny_genai_build):
    footprint = json.loads((tiny_genai_build / "footprint.json").read_text())
    (report,) = footprint["checks"].values()
    variants = {v["adapter"]: v for v in report["variants"]}
    assert set(variants) == {"base", "default"}
    for variant in variants.values():  # fp32: the ONNX model is the PyTorch model
        assert variant["max_abs_diff"] < 1e-3
        assert variant["top1_agreement"] == 1.0


def test_seed_app_flow_with_and_without_the_adapter(tiny_genai_build, tiny_llama_dir, tiny_lora_dir):
    import onnxruntime_genai as og
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = og.Model(str(tiny_genai_build / "model"))
    adapters = og.Adapters(model)
    adapters.load(str(tiny_genai_build / "model" / "adapter_weights.onnx_adapter"), "travel")
    ids = [1, 5, 9, 14, 27, 3]

    def onnx_logits(adapter: str | None) -> np.ndarray:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=20, past_present_share_buffer=False)
        generator = og.Generator(model, params)
        if adapter:
            generator.set_active_adapter(adapters, adapter)
        generator.append_tokens(ids)
        return np.array(generator.get_output("logits"))[0, -1]

    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)(torch.tensor([ids])).logits[0, -1].numpy()
        peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), tiny_lora_dir)
        tuned = peft(torch.tensor([ids])).logits[0, -1].numpy()
    assert np.abs(onnx_logits(None) - base).max() < 1e-3  # no adapter loaded: runs, and is the base model
    assert np.abs(onnx_logits("travel") - tuned).max() < 1e-3
    assert np.abs(tuned - base).max() > 1e-2


def test_convert_adapters_matches_extraction_and_serves_side_by_side(
    tiny_genai_build, tiny_llama_dir, tiny_lora_dir, tmp_path
):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    same = tmp_path / "same.onnx_adapter"
    result = olivepress(
        "convert-adapters", "--adapter_path", str(tiny_lora_dir), "-m", str(tiny_genai_build), "-o", str(same)
    )
    assert result.returncode == 0, result.stderr
    extracted = read_adapter_file(tiny_genai_build / "model" / "adapter_weights.onnx_adapter")
    converted = read_adapter_file(same)
    assert set(converted) == set(extracted)
    for name in extracted:
        np.testing.assert_allclose(converted[name], extracted[name], rtol=1e-6, atol=1e-7)

    second_dir = save_tiny_lora_adapter(tiny_llama_dir, tmp_path / "second", seed=7)
    second = tmp_path / "second.onnx_adapter"
    assert (
        olivepress(
            "convert-adapters",
            "--adapter_path",
            str(second_dir),
            "-m",
            str(tiny_genai_build),
            "-o",
            str(second),
        ).returncode
        == 0
    )
    model = GenAIModel(tiny_genai_build, adapters={"second": second})
    ids = [1, 5, 9, 14, 27, 3]
    for name, peft_dir in (("default", tiny_lora_dir), ("second", second_dir)):
        with torch.no_grad():
            peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), peft_dir)
            expected = peft(torch.tensor([ids])).logits[0, -1].numpy()
        np.testing.assert_allclose(model.next_token_logits(ids, adapter=name), expected, atol=1e-3)


def test_int4_build_keeps_lora_weights_float(tmp_path, tiny_llama_dir, tiny_lora_dir):
    import onnx

    out = tmp_path / "out"
    result = olivepress(
        "auto-opt",
        "-m",
        str(tiny_llama_dir),
        "--adapter_path",
        str(tiny_lora_dir),
        "-o",
        str(out),
        "--cache_dir",
        str(tmp_path / "cache"),
    )
    assert result.returncode == 0, result.stderr
    nodes = branch_nodes(onnx.load(out / "model" / "model.onnx", load_external_data=False).graph)
    assert any(n.op_type == "MatMulNBits" for n in nodes)
    lora_nodes = [n for n in nodes if "/lora_" in n.name]
    assert lora_nodes and all(n.op_type == "MatMul" for n in lora_nodes)
    tensors = read_adapter_file(out / "model" / "adapter_weights.onnx_adapter")
    assert all(t.dtype == np.float32 for t in tensors.values())


def test_adapter_for_another_base_is_refused(tmp_path, tiny_llama_dir):
    other_base = save_tiny_llama(tmp_path / "other", hidden_size=96)
    other_adapter = save_tiny_lora_adapter(other_base, tmp_path / "other_lora")
    result = olivepress(
        "auto-opt",
        "-m",
        str(tiny_llama_dir),
        "--adapter_path",
        str(other_adapter),
        "-o",
        str(tmp_path / "out"),
    )
    assert_one_line_error(result, "trained on another base model.*hidden size 64")
    assert not (tmp_path / "out").exists()


def test_missing_adapter_path(tmp_path, tiny_llama_dir):
    result = olivepress(
        "auto-opt",
        "-m",
        str(tiny_llama_dir),
        "--adapter_path",
        str(tmp_path / "nope"),
        "-o",
        str(tmp_path / "out"),
    )
    assert_one_line_error(result, "adapter path .*nope does not exist")


def test_unknown_provider(tmp_path, tiny_llama_dir):
    result = olivepress(
        "auto-opt",
        "-m",
        str(tiny_llama_dir),
        "--provider",
        "CUDAExecutionProvidr",
        "-o",
        str(tmp_path / "out"),
    )
    assert_one_line_error(
        result, "unknown execution provider 'CUDAExecutionProvidr'.*did you mean 'CUDAExecutionProvider'"
    )


def test_generate_with_an_unknown_adapter_name(tiny_genai_build):
    result = olivepress("generate", "-m", str(tiny_genai_build), "-p", "hi", "--active", "travel")
    assert_one_line_error(result, "no adapter named 'travel' \\(loaded: default\\)")


def test_generate_side_by_side(tiny_genai_build):
    result = olivepress(
        "generate",
        "-m",
        str(tiny_genai_build),
        "-p",
        "hello",
        "--active",
        "base",
        "--active",
        "default",
        "--max_new_tokens",
        "4",
    )
    assert result.returncode == 0, result.stderr
    assert "[base]" in result.stderr and "[default]" in result.stderr


def test_encoder_takes_the_generic_path_and_is_checked(tmp_path, tiny_bert_dir):
    out = tmp_path / "out"
    result = olivepress(
        "auto-opt",
        "-m",
        str(tiny_bert_dir),
        "--precision",
        "int8",
        "-o",
        str(out),
        "--cache_dir",
        str(tmp_path / "c"),
    )
    assert result.returncode == 0, result.stderr
    assert "generic ONNX path" in result.stderr
    footprint = json.loads((out / "footprint.json").read_text())
    assert [n["pass_type"] for n in footprint["nodes"]] == [
        "OnnxConversion",
        "OrtTransformersOptimization",
        "OnnxDynamicQuantization",
    ]
    (check,) = footprint["checks"].values()
    assert check["task"] == "feature-extraction" and check["min_cosine"] > 0.9


def test_use_ort_genai_on_an_encoder_says_why_not(tmp_path, tiny_bert_dir):
    result = olivepress("auto-opt", "-m", str(tiny_bert_dir), "--use_ort_genai", "-o", str(tmp_path / "out"))
    assert_one_line_error(result, "the ORT GenAI builder does not convert BertModel; drop --use_ort_genai")


def test_provider_that_is_not_here_builds_but_says_unverified(tmp_path, tiny_llama_dir):
    result = olivepress(
        "auto-opt",
        "-m",
        str(tiny_llama_dir),
        "--provider",
        "CUDAExecutionProvider",
        "--precision",
        "fp16",
        "-o",
        str(tmp_path / "out"),
        "--cache_dir",
        str(tmp_path / "c"),
    )
    assert result.returncode == 0, result.stderr
    assert "not verified" in result.stderr and "CUDAExecutionProvider is not available" in result.stderr
    genai = json.loads((tmp_path / "out" / "model" / "genai_config.json").read_text())
    assert "cuda" in json.dumps(genai["model"]["decoder"]["session_options"]).lower()


def test_quantized_base_with_an_adapter_keeps_its_integers_and_matches_peft(
    tmp_path, tiny_llama_dir, tiny_lora_dir
):
    """The seed lab's order: quantize, then fine-tune on the checkpoint, then auto-opt with the
    adapter. The builder cannot wrap its quantized model in PEFT, so the LoRA path is added after
    the build; the MatMulNBits still hold the checkpoint's codes, and the result matches
    PyTorch (dequantised grid) + PEFT with and without the adapter."""
    import onnx
    from onnx import numpy_helper

    from olivepress.quant.checkpoint import read_quantized

    quantized = olivepress(
        "quantize",
        "-m",
        str(tiny_llama_dir),
        "--algorithm",
        "rtn",
        "--group_size",
        "32",
        "-o",
        str(tmp_path / "rtn"),
        "--cache_dir",
        str(tmp_path / "cache"),
    )
    assert quantized.returncode == 0, quantized.stderr
    out = tmp_path / "out"
    result = olivepress(
        "auto-opt",
        "-m",
        str(tmp_path / "rtn" / "model"),
        "--adapter_path",
        str(tiny_lora_dir),
        "--use_ort_genai",
        "-o",
        str(out),
        "--cache_dir",
        str(tmp_path / "cache"),
    )
    assert result.returncode == 0, result.stderr

    graph = onnx.load(out / "model" / "model.onnx").graph
    initializers = {i.name: i for i in graph.initializer}
    nodes = branch_nodes(graph)
    node = next(n for n in nodes if n.name == "/model/layers.0/attn/q_proj/MatMulNBits")
    packed = numpy_helper.to_array(initializers[node.input[1]])
    codes = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(packed.shape[0], -1)
    checkpoint, _, _ = read_quantized(tmp_path / "rtn" / "model")
    assert np.array_equal(codes, checkpoint["model.layers.0.self_attn.q_proj"].codes.numpy())
    assert [n.op_type for n in nodes if n.name.startswith("/model/layers.0/attn/q_proj/lora")] == [
        "MatMul",
        "MatMul",
        "Add",
    ]

    (report,) = json.loads((out / "footprint.json").read_text())["checks"].values()
    variants = {v["adapter"]: v for v in report["variants"]}
    assert set(variants) == {"base", "default"}
    # PyTorch holds the ONNX model's grid (the builder's int4 lm_head / embedding too); what is
    # left is int8 activations (MatMulNBits at accuracy level 4 on a CPU).
    assert report["passed"] and report["difference_from"].startswith("int8 activations"), report["lines"]
    for variant in variants.values():
        assert variant["mean_abs_diff"] < 0.05 and variant["top1_agreement"] >= 0.99, variants
    # ... and the adapter's own effect is far above that: the LoRA path is really there.
    model = GenAIModel(out)
    ids = [1, 5, 9, 14, 27, 3]
    effect = np.abs(model.next_token_logits(ids, "default") - model.next_token_logits(ids, "base")).mean()
    assert effect > 5 * variants["default"]["mean_abs_diff"], (effect, variants)
    tensors = read_adapter_file(out / "model" / "adapter_weights.onnx_adapter")
    assert any(name.endswith("q_proj.lora_B.MatMul.weight") for name in tensors)


def test_quantize_embeddings_false_keeps_the_tied_embedding_and_lm_head_float(tmp_path, tiny_llama_dir):
    import onnx

    from olivepress.api import run

    def ops(quantize_embeddings: bool) -> dict[str, str]:
        out = tmp_path / f"q{quantize_embeddings}"
        run(
            {
                "input_model": {"model_path": str(tiny_llama_dir)},
                "passes": {
                    "mb": {
                        "type": "ModelBuilder",
                        "precision": "int4",
                        "quantize_embeddings": quantize_embeddings,
                    }
                },
                "output_dir": str(out),
                "cache_dir": str(tmp_path / "cache"),
            },
            summary=False,
            log_level=3,
        )
        graph = onnx.load(out / "model" / "model.onnx", load_external_data=False).graph
        return {
            n.name: n.op_type for n in graph.node if n.name.startswith(("/model/embed_tokens", "/lm_head"))
        }

    assert "MatMulNBits" in ops(True).values()  # the builder's default: the tied pair in int4
    kept = ops(False)
    assert not {"MatMulNBits", "GatherBlockQuantized"} & set(kept.values()), kept
    assert kept["/lm_head/MatMul"] == "MatMul" and kept["/model/embed_tokens/Gather"] == "Gather"

"""The generic ONNX path: export, transformer fusions, int8 / int4 / fp16, the chains auto-opt
uses, and their errors. Tiny random BERT/Llama models for the unit tests; all-MiniLM-L6-v2
for the real checks (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from olivepress.api import run as run_workflow
from olivepress.data import data_config_from_flags, heldout_text
from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel, OnnxModel
from olivepress.models.onnx_session import inference_session, read_inference_settings
from olivepress.models.tasks import resolve_task
from olivepress.passes.base import PassContext
from olivepress.passes.onnx import (
    export,
    fp16,
    quantize_hqq,
    quantize_int4,
    quantize_int8_dynamic,
    quantize_int8_static,
    transformer_optimize,
)
from olivepress.passes.onnx.chains import describe_generic_chain, generic_chain, provider_available
from olivepress.passes.onnx.model_files import read_metadata
from olivepress.passes.registry import find_pass

SHIPPED_CALIBRATION = (
    Path(__file__).resolve().parents[1] / "src" / "olivepress" / "data" / "text" / "calibration.txt"
)


# --- helpers -------------------------------------------------------------------------------


def run_pass(module, model, tmp_path: Path, name: str, **options):
    out = tmp_path / name / "model"
    out.mkdir(parents=True)
    ctx = PassContext(scratch_dir=tmp_path / "scratch")
    return module.run(model, module.Config(**options), out, ctx)


def op_types(handle: OnnxModel) -> set[str]:
    model = onnx.load(str(Path(handle.path) / "model.onnx"), load_external_data=False)
    return {node.op_type for node in model.graph.node}


def texts(count: int = 24) -> list[str]:
    return [line.strip() for line in heldout_text().splitlines() if len(line.split()) > 3][:count]


def encode(folder: Path, sentences: list[str], max_length: int = 128) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    feeds = dict(
        tokenizer(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    )
    feeds.setdefault("token_type_ids", np.zeros_like(feeds["input_ids"]))
    return feeds


def onnx_hidden(handle: OnnxModel, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = inference_session(Path(handle.path))
    wanted = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0].astype(np.float32)


def torch_hidden(folder: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()


def pooled_cosine(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Cosine similarity per sentence of the mean-pooled embeddings (sentence-transformers' pooling)."""
    weights = mask[..., None].astype(np.float32)
    ea, eb = ((h * weights).sum(1) / weights.sum(1) for h in (a, b))
    return (ea * eb).sum(1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1))


# --- tiny models ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bert_dir, tmp_path_factory) -> OnnxModel:
    return run_pass(export, HfModel(path=str(tiny_bert_dir)), tmp_path_factory.mktemp("conv"), "conv")


@pytest.fixture(scope="module")
def tiny_optimized(tiny_onnx, tmp_path_factory) -> OnnxModel:
    return run_pass(transformer_optimize, tiny_onnx, tmp_path_factory.mktemp("opt"), "opt")


@pytest.fixture(scope="module")
def tiny_feeds(tiny_bert_dir) -> dict[str, np.ndarray]:
    return encode(tiny_bert_dir, texts(6))


def test_export_matches_pytorch_with_dynamic_axes(tiny_bert_dir, tiny_onnx, tiny_feeds):
    folder = Path(tiny_onnx.path)
    assert (folder / "model.onnx").is_file()
    # Self-contained: tokenizer and config beside the model, no PyTorch weights.
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}
    assert not list(folder.glob("*.safetensors"))
    model = onnx.load(str(folder / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == ["batch", "sequence"]
    assert read_metadata(folder / "model.onnx") == {"task": "feature-extraction", "exporter": "torchscript"}

    expected = torch_hidden(tiny_bert_dir, tiny_feeds)
    got = onnx_hidden(tiny_onnx, tiny_feeds)
    assert got.shape == expected.shape and got.shape[0] == 6
    assert np.abs(got - expected).max() < 1e-4


def test_dynamo_exporter_also_matches_pytorch(tiny_bert_dir, tmp_path, tiny_feeds):
    handle = run_pass(export, HfModel(path=str(tiny_bert_dir)), tmp_path, "conv", use_dynamo_exporter=True)
    assert read_metadata(Path(handle.path) / "model.onnx")["exporter"] == "dynamo"
    assert np.abs(onnx_hidden(handle, tiny_feeds) - torch_hidden(tiny_bert_dir, tiny_feeds)).max() < 1e-4


def test_causal_lm_exports_logits_without_past(tiny_llama_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    handle = run_pass(export, HfModel(path=str(tiny_llama_dir)), tmp_path, "conv")
    model = onnx.load(str(Path(handle.path) / "model.onnx"), load_external_data=False)
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in model.graph.output] == ["logits"]
    ids = np.array([[1, 5, 9, 14, 27, 3, 8], [4, 4, 2, 9, 11, 30, 7]], dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    got = onnx_hidden(handle, {"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        lm = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
        expected = lm(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    assert np.abs(got - expected).max() < 1e-3


def test_task_comes_from_the_architecture_unless_set():
    assert resolve_task(None, "text-generation", ["BertModel"]) == "feature-extraction"
    assert resolve_task(None, "text-generation", ["LlamaForCausalLM"]) == "text-generation"
    assert resolve_task(None, "sentence-similarity", ["BertModel"]) == "feature-extraction"
    assert resolve_task("text-classification", "text-generation", ["BertModel"]) == "text-classification"
    with pytest.raises(
        OlivepressError, match="without a KV cache; for a decoder LLM with one use ModelBuilder"
    ):
        resolve_task("text-generation-with-past", None, None)
    with pytest.raises(OlivepressError, match="cannot export task 'translation'"):
        resolve_task("translation", None, None)


def test_optimization_keeps_outputs_and_reports_fusions(tiny_onnx, tiny_optimized, tiny_feeds, caplog):
    fusions = json.loads(read_metadata(Path(tiny_optimized.path) / "model.onnx")["fusions"])
    assert (
        fusions["Attention"] == 2
        and fusions["SkipLayerNormalization"] >= 2
        and "EmbedLayerNormalization" in fusions
    )
    assert "Attention" in op_types(tiny_optimized) and "Softmax" not in op_types(tiny_optimized)
    assert (Path(tiny_optimized.path) / "tokenizer.json").is_file()  # carried along
    assert np.abs(onnx_hidden(tiny_optimized, tiny_feeds) - onnx_hidden(tiny_onnx, tiny_feeds)).max() < 1e-4


def test_dynamic_int8_quantizes_and_stays_close(tiny_optimized, tiny_feeds, tmp_path):
    handle = run_pass(quantize_int8_dynamic, tiny_optimized, tmp_path, "int8")
    ops = op_types(handle)
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops and "QAttention" in ops
    cosine = pooled_cosine(
        onnx_hidden(handle, tiny_feeds), onnx_hidden(tiny_optimized, tiny_feeds), tiny_feeds["attention_mask"]
    )
    assert cosine.min() > 0.98


def test_static_int8_calibrates_on_a_data_config(tiny_optimized, tiny_feeds, tmp_path):
    data = data_config_from_flags(str(SHIPPED_CALIBRATION), data_name="text", name="calibration")
    handle = run_pass(
        quantize_int8_static, tiny_optimized, tmp_path, "int8", data_config=data, calibration_samples=16
    )
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(handle)
    cosine = pooled_cosine(
        onnx_hidden(handle, tiny_feeds), onnx_hidden(tiny_optimized, tiny_feeds), tiny_feeds["attention_mask"]
    )
    assert cosine.min() > 0.95


def test_static_int8_qoperator_format(tiny_optimized, tiny_feeds, tmp_path):
    data = data_config_from_flags(str(SHIPPED_CALIBRATION), data_name="text", name="calibration")
    handle = run_pass(
        quantize_int8_static,
        tiny_optimized,
        tmp_path,
        "int8",
        data_config=data,
        calibration_samples=8,
        quant_format="QOperator",
        activation_type="uint8",
    )
    assert "QLinearMatMul" in op_types(handle)
    assert onnx_hidden(handle, tiny_feeds).shape == tiny_feeds["input_ids"].shape + (64,)


def test_int4_makes_matmulnbits_and_stays_close(tiny_onnx, tiny_feeds, tmp_path):
    handle = run_pass(quantize_int4, tiny_onnx, tmp_path, "int4", block_size=32, accuracy_level=4)
    assert "MatMulNBits" in op_types(handle)
    cosine = pooled_cosine(
        onnx_hidden(handle, tiny_feeds), onnx_hidden(tiny_onnx, tiny_feeds), tiny_feeds["attention_mask"]
    )
    assert cosine.min() > 0.95


def dequantized_weights(handle: OnnxModel) -> dict[str, np.ndarray]:
    """Each MatMulNBits weight back in float, [K, N], keyed by the node's name."""
    model = onnx.load(str(Path(handle.path) / "model.onnx"))
    tensors = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    weights = {}
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        n, k, block = attrs["N"], attrs["K"], attrs["block_size"]
        packed = tensors[node.input[1]].reshape(n, -1)
        levels = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, -1, block).astype(np.float32)
        scales = tensors[node.input[2]].reshape(n, -1, 1)
        zeros = tensors[node.input[3]].reshape(n, -1)
        if zeros.dtype == np.uint8:  # round-to-nearest's integer zero points, two to a byte
            zeros = np.stack([zeros & 0x0F, zeros >> 4], axis=-1).reshape(n, -1)[:, : levels.shape[1]]
        zeros = zeros.reshape(n, -1, 1).astype(np.float32)
        weights[node.name] = ((levels - zeros) * scales).reshape(n, -1)[:, :k].T
        assert attrs.get("accuracy_level") == 4
    return weights


def float_weights(handle: OnnxModel) -> dict[str, np.ndarray]:
    model = onnx.load(str(Path(handle.path) / "model.onnx"))
    tensors = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    return {
        node.name: tensors[node.input[1]]
        for node in model.graph.node
        if node.op_type == "MatMul" and node.input[1] in tensors
    }


def test_hqq_int4_fits_the_weights_at_least_as_well_as_round_to_nearest(tiny_onnx, tiny_feeds, tmp_path):
    hqq = run_pass(quantize_hqq, tiny_onnx, tmp_path, "hqq", block_size=32, accuracy_level=4)
    rtn = run_pass(
        quantize_int4, tiny_onnx, tmp_path, "rtn", block_size=32, accuracy_level=4, is_symmetric=False
    )
    model = onnx.load(str(Path(hqq.path) / "model.onnx"))
    zero_points = [i for i in model.graph.initializer if i.name.endswith("_zero_points")]
    assert zero_points and all(z.data_type == onnx.TensorProto.FLOAT for z in zero_points)  # HQQ's zeros
    original = {
        name.removesuffix("_Q4"): weight
        for name, weight in float_weights(tiny_onnx).items()
        if weight.ndim == 2 and weight.shape[0] % 32 == 0
    }
    hqq_weights, rtn_weights = dequantized_weights(hqq), dequantized_weights(rtn)
    assert len(hqq_weights) == len(rtn_weights) > 0
    hqq_error = np.mean([np.abs(w - original[n.removesuffix("_Q4")]).mean() for n, w in hqq_weights.items()])
    rtn_error = np.mean([np.abs(w - original[n.removesuffix("_Q4")]).mean() for n, w in rtn_weights.items()])
    assert hqq_error < rtn_error, (hqq_error, rtn_error)
    cosine = pooled_cosine(
        onnx_hidden(hqq, tiny_feeds), onnx_hidden(tiny_onnx, tiny_feeds), tiny_feeds["attention_mask"]
    )
    assert cosine.min() > 0.95


def test_fp16_model_runs_with_float32_io(tiny_optimized, tiny_feeds, tmp_path):
    handle = run_pass(fp16, tiny_optimized, tmp_path, "fp16")
    model = onnx.load(str(Path(handle.path) / "model.onnx"))
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    got = onnx_hidden(handle, tiny_feeds)
    assert np.abs(got - onnx_hidden(tiny_optimized, tiny_feeds)).max() < 0.05


def test_external_data_on_request(tiny_onnx, tmp_path, tiny_feeds):
    handle = run_pass(fp16, tiny_onnx, tmp_path, "fp16", save_as_external_data=True, size_threshold=0)
    folder = Path(handle.path)
    assert (folder / "model.onnx.data").is_file()
    again = run_pass(quantize_int4, handle, tmp_path, "int4")  # reads the external data, writes inline
    assert not (Path(again.path) / "model.onnx.data").exists()
    assert onnx_hidden(again, tiny_feeds).shape[0] == tiny_feeds["input_ids"].shape[0]


# --- the chains auto-opt uses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "precision", "passes"),
    [
        ("CPUExecutionProvider", "fp32", ["OnnxConversion", "OrtTransformersOptimization"]),
        (
            "CPUExecutionProvider",
            "int8",
            ["OnnxConversion", "OrtTransformersOptimization", "OnnxDynamicQuantization"],
        ),
        (
            "CPUExecutionProvider",
            "int4",
            ["OnnxConversion", "OrtTransformersOptimization", "OnnxMatMul4Quantizer"],
        ),
        ("CUDAExecutionProvider", "fp16", ["OnnxConversion", "OrtTransformersOptimization"]),
        (
            "CUDAExecutionProvider",
            "int8",
            ["OnnxConversion", "OrtTransformersOptimization", "OnnxStaticQuantization"],
        ),
        ("DmlExecutionProvider", "fp16", ["OnnxConversion", "OrtTransformersOptimization"]),
        ("TensorrtExecutionProvider", "fp16", ["OnnxConversion"]),
        ("QNNExecutionProvider", "int8", ["OnnxConversion", "OnnxStaticQuantization"]),
        ("OpenVINOExecutionProvider", "int8", ["OnnxConversion", "OnnxStaticQuantization"]),
        ("NvTensorRTRTXExecutionProvider", "int4", ["OnnxConversion", "OnnxMatMul4Quantizer"]),
    ],
)
def test_generic_chain_per_provider(provider, precision, passes):
    chain = generic_chain("gpu", provider, precision)
    assert [name for name, _ in chain] == passes
    for name, options in chain:  # every step is a valid config of a registered pass
        find_pass(name).module.Config.model_validate(options)
    settings = chain[-1][1]["inference_settings"]
    assert settings["execution_providers"][0] == provider
    assert describe_generic_chain("gpu", provider, precision).startswith(
        f"{precision} for {provider}: export"
    )


def test_generic_chain_options_that_matter():
    cuda_fp16 = dict(generic_chain("gpu", "cuda", "fp16"))
    assert {"use_gpu": True, "float16": True}.items() <= cuda_fp16["OrtTransformersOptimization"].items()
    assert dict(generic_chain("cpu", None, "int4"))["OnnxMatMul4Quantizer"]["accuracy_level"] == 4
    qnn = dict(generic_chain("npu", None, "int8"))
    assert (
        qnn["OnnxConversion"]["dynamic"] is False
        and qnn["OnnxStaticQuantization"]["activation_type"] == "QUInt16"
    )
    dml = generic_chain("gpu", "DmlExecutionProvider", "fp32")[-1][1]["inference_settings"]
    assert dml["session_options"]["enable_mem_pattern"] is False
    assert "fp16 on a CPU saves size, not time" in describe_generic_chain("cpu", "cpu", "fp16")
    assert provider_available("CPUExecutionProvider")


@pytest.mark.parametrize(
    ("device", "provider", "precision", "message"),
    [
        ("cpu", "CPUExecutionProvider", "int3", "precision 'int3' is not one of fp32, fp16, int8, int4"),
        (
            "cpu",
            "FancyExecutionProvider",
            "int8",
            "no generic ONNX chain for provider 'FancyExecutionProvider'",
        ),
        ("npu", "QNNExecutionProvider", "int4", "QNNExecutionProvider has no int4"),
        ("gpu", "WebGpuExecutionProvider", "int8", "WebGpuExecutionProvider has no int8 kernels"),
    ],
)
def test_generic_chain_refuses_what_has_no_kernels(device, provider, precision, message):
    with pytest.raises(OlivepressError, match=message):
        generic_chain(device, provider, precision)


@pytest.mark.parametrize(
    ("device", "provider", "precision"),
    [
        ("gpu", "CUDAExecutionProvider", "fp16"),
        ("gpu", "CUDAExecutionProvider", "int8"),
        ("npu", "QNNExecutionProvider", "int8"),
    ],
)
def test_chains_for_absent_providers_still_build_here(device, provider, precision, tiny_bert_dir, tmp_path):
    chain = generic_chain(device, provider, precision)
    config = {
        "input_model": {"type": "HfModel", "model_path": str(tiny_bert_dir)},
        "passes": {f"p{i}": {"type": name, **options} for i, (name, options) in enumerate(chain)},
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "out"),
    }
    result = run_workflow(config, summary=False)
    folder = Path(result.model.path)
    settings = read_inference_settings(folder)
    assert settings is not None and settings.execution_providers[0] == provider
    session = inference_session(folder)  # falls back to CPU here, with the settings' session options
    feeds = encode(tiny_bert_dir, texts(1))
    if provider == "QNNExecutionProvider":  # exported with fixed 1 x 128 shapes
        feeds = {k: np.pad(v, ((0, 0), (0, 128 - v.shape[1]))) for k, v in feeds.items()}
    wanted = {i.name for i in session.get_inputs()}
    assert session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0].shape[0] == 1


# --- errors --------------------------------------------------------------------------------


def test_onnx_pass_on_a_folder_without_onnx_says_so(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        OlivepressError, match=r"takes an ONNX model, but .* has no \.onnx file; convert the model first"
    ):
        run_pass(quantize_int8_dynamic, OnnxModel(path=str(empty)), tmp_path, "int8")


def test_hf_model_into_an_onnx_pass_is_refused(tiny_bert_dir, tmp_path):
    config = {
        "input_model": {"type": "HfModel", "model_path": str(tiny_bert_dir)},
        "passes": {"quantize": {"type": "OnnxDynamicQuantization"}},
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "out"),
    }
    with pytest.raises(OlivepressError, match="takes a onnx model but gets hf"):
        run_workflow(config, summary=False)


def test_unknown_option_is_named(tiny_bert_dir, tmp_path):
    config = {
        "input_model": {"type": "HfModel", "model_path": str(tiny_bert_dir)},
        "passes": {
            "convert": {"type": "OnnxConversion"},
            "quantize": {"type": "OnnxDynamicQuantization", "per_chanel": True},
        },
        "output_dir": str(tmp_path / "out"),
    }
    with pytest.raises(
        OlivepressError, match="unknown key 'per_chanel' in passes.quantize.*did you mean 'per_channel'"
    ):
        run_workflow(config, summary=False)


def test_static_quantization_without_data_says_what_to_do(tiny_optimized, tmp_path):
    with pytest.raises(
        OlivepressError, match="OnnxStaticQuantization needs calibration data: set data_config"
    ):
        run_pass(quantize_int8_static, tiny_optimized, tmp_path, "int8")


def test_static_quantization_with_an_undefined_data_config(tiny_optimized, tmp_path):
    with pytest.raises(OlivepressError, match="data config 'travel' is not defined"):
        run_pass(quantize_int8_static, tiny_optimized, tmp_path, "int8", data_config="travel")


def test_untraceable_model_is_explained(tiny_bert_dir, tmp_path, monkeypatch):
    import torch
    from transformers.models.bert import modeling_bert

    original = modeling_bert.BertEmbeddings.forward

    def with_an_op_onnx_lacks(self, *args, **kwargs):
        hidden = original(self, *args, **kwargs)
        return hidden + torch.linalg.eigvalsh(hidden[:, :4, :4] @ hidden[:, :4, :4].mT).sum() * 0

    monkeypatch.setattr(modeling_bert.BertEmbeddings, "forward", with_an_op_onnx_lacks)
    with pytest.raises(OlivepressError) as failure:
        run_pass(export, HfModel(path=str(tiny_bert_dir)), tmp_path, "conv")
    message = str(failure.value)
    assert (
        "OnnxConversion could not export" in message
        and "torchscript exporter:" in message
        and "dynamo exporter:" in message
    )
    assert "\n" not in message and "\x1b" not in message
    assert not list((tmp_path / "conv" / "model").iterdir())  # nothing half-written


def test_quantized_checkpoint_is_refused(tiny_bert_dir, tmp_path):
    import shutil

    folder = tmp_path / "awq"
    shutil.copytree(tiny_bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps({**config, "quantization_config": {"quant_method": "awq"}})
    )
    with pytest.raises(OlivepressError, match="'awq' quantized checkpoint, which torch.onnx cannot export"):
        run_pass(export, HfModel(path=str(folder)), tmp_path, "conv")


def test_int4_block_size_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="block_size=48 must be a power of two"):
        quantize_int4.Config(block_size=48)


# --- all-MiniLM-L6-v2: the real model ------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_optimized(minilm_dir, tmp_path_factory) -> tuple[OnnxModel, OnnxModel]:
    root = tmp_path_factory.mktemp("minilm")
    converted = run_pass(export, HfModel(path=str(minilm_dir)), root, "conv")
    return converted, run_pass(transformer_optimize, converted, root, "opt")


@pytest.fixture(scope="module")
def minilm_reference(minilm_dir) -> tuple[dict[str, np.ndarray], np.ndarray]:
    feeds = encode(minilm_dir, texts(32))
    return feeds, torch_hidden(minilm_dir, feeds)


@pytest.mark.slow
def test_minilm_export_and_fusions_match_pytorch(minilm_optimized, minilm_reference):
    converted, optimized = minilm_optimized
    feeds, reference = minilm_reference
    assert np.abs(onnx_hidden(converted, feeds) - reference).max() < 1e-3
    assert np.abs(onnx_hidden(optimized, feeds) - reference).max() < 1e-3
    fusions = json.loads(read_metadata(Path(optimized.path) / "model.onnx")["fusions"])
    assert fusions == {
        "EmbedLayerNormalization": 1,
        "Attention": 6,
        "BiasGelu": 6,
        "SkipLayerNormalization": 12,
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_minilm_int8_embeddings_stay_close_to_pytorch(kind, minilm_optimized, minilm_reference, tmp_path):
    _, optimized = minilm_optimized
    feeds, reference = minilm_reference
    if kind == "dynamic":
        handle = run_pass(quantize_int8_dynamic, optimized, tmp_path, "int8")
    else:
        data = data_config_from_flags(str(SHIPPED_CALIBRATION), data_name="text", name="calibration")
        handle = run_pass(quantize_int8_static, optimized, tmp_path, "int8", data_config=data)
    cosine = pooled_cosine(onnx_hidden(handle, feeds), reference, feeds["attention_mask"])
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.98, cosine
    assert (Path(handle.path) / "model.onnx").stat().st_size < 0.8 * (
        Path(optimized.path) / "model.onnx"
    ).stat().st_size


@pytest.mark.slow
def test_minilm_workflow_writes_output_and_reruns_cached(minilm_dir, tmp_path):
    config = {
        "input_model": {"type": "HfModel", "model_path": str(minilm_dir), "task": "feature-extraction"},
        "passes": {
            "conversion": {"type": "OnnxConversion", "target_opset": 17},
            "optimize": {"type": "OrtTransformersOptimization"},
            "quantize": {"type": "OnnxDynamicQuantization"},
        },
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "out"),
    }
    first = run_workflow(config, summary=False)
    out = tmp_path / "out" / "model"
    assert (out / "model.onnx").is_file() and (out / "tokenizer.json").is_file()
    assert [n.from_cache for n in first.flows[0].nodes] == [False, False, False]
    footprint = json.loads((tmp_path / "out" / "footprint.json").read_text())
    assert [n["pass_type"] for n in footprint["nodes"]] == [
        "OnnxConversion",
        "OrtTransformersOptimization",
        "OnnxDynamicQuantization",
    ]

    second = run_workflow(config, summary=False)
    assert [n.from_cache for n in second.flows[0].nodes] == [True, True, True]
    feeds = encode(out, texts(4))
    assert onnx_hidden(second.model, feeds).shape == feeds["input_ids"].shape + (384,)

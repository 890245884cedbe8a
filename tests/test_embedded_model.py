"""Integration tests on the embedded SmolLM2-135M-Instruct (slow: real weights)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from olivepress.api import run
from olivepress.models import gguf
from olivepress.models.default import embedded_gguf_file
from olivepress.models.resolve import resolve_model
from olivepress.runtime.generate import GenAIModel, SearchOptions

pytestmark = pytest.mark.slow


def test_gguf_converts_once_into_a_plain_hf_folder(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("OLIVEPRESS_HOME", str(tmp_path / "home"))
    handle = resolve_model(str(embedded_gguf_file()))
    folder = Path(handle.path)
    assert folder.is_relative_to(tmp_path / "home")
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config  # a plain float checkpoint, not a 'gguf quantized' one
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (576, 30, 49152)

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        next_token = model(ids).logits[0, -1].argmax()
    assert tokenizer.decode(next_token).strip() == "Paris"

    # The second use finds the cached folder: no conversion at all.
    def fail(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(gguf, "_convert", fail)
    started = time.perf_counter()
    assert resolve_model("default").path == str(folder)
    assert time.perf_counter() - started < 5


def test_seed_config_builds_int4_genai_model_that_speaks_english(tmp_path, embedded_model_dir):
    config = {
        "input_model": {
            "type": "PyTorchModel",
            "config": {"hf_config": {"model_name": "default", "task": "text-generation"}},
        },
        "passes": {"builder": {"type": "ModelBuilder", "config": {"precision": "int4"}}},
        "engine": {
            "search_strategy": False,
            "cache_dir": str(tmp_path / "cache"),
            "output_dir": str(tmp_path / "out"),
        },
    }
    result = run(config, summary=False)
    model_dir = tmp_path / "out" / "model"
    assert Path(result.model.path) == model_dir
    genai = json.loads((model_dir / "genai_config.json").read_text())
    assert genai["model"]["type"] == "llama"

    import onnx

    graph = onnx.load(model_dir / "model.onnx", load_external_data=False).graph
    assert any(node.op_type == "MatMulNBits" for node in graph.node)  # int4 weights

    model = GenAIModel(tmp_path / "out")
    answer = model.generate("What is the capital of France?", SearchOptions(max_new_tokens=24))
    assert "Paris" in answer.text
    assert answer.new_tokens > 3

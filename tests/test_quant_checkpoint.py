"""Checkpoint metadata and reading, and the perplexity evaluator the quantizers are judged by."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from olivepress.errors import OlivepressError
from olivepress.evaluate.perplexity import perplexity
from olivepress.models.handles import HfModel
from olivepress.models.loading import load_causal_lm, load_tokenizer
from olivepress.passes.base import PassContext
from olivepress.passes.torch import rtn
from olivepress.quant.checkpoint import read_quantized
from olivepress.quant.grid import Grid, quantize_weight
from olivepress.quant.qconfig import gptq_dynamic


@pytest.fixture(scope="module")
def rtn_folder(tiny_llama_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rtn") / "model"
    rtn.run(HfModel(path=str(tiny_llama_dir)), rtn.Config(group_size=32), out, PassContext())
    return out


def _edit_config(folder: Path, tmp_path: Path, edit) -> HfModel:
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    edit(config["quantization_config"])
    (copy / "config.json").write_text(json.dumps(config))
    return HfModel(path=str(copy))


def test_awq_quantization_config_is_the_autoawq_one(rtn_folder):
    qconfig = json.loads((rtn_folder / "config.json").read_text())["quantization_config"]
    assert {k: qconfig[k] for k in ("quant_method", "bits", "group_size", "zero_point", "version")} == {
        "quant_method": "awq",
        "bits": 4,
        "group_size": 32,
        "zero_point": True,
        "version": "gemm",
    }
    config = json.loads((rtn_folder / "config.json").read_text())
    assert config["dtype"] == "float16"


def test_quantized_folder_is_much_smaller(tiny_llama_dir, rtn_folder):
    # the tiny model is mostly embeddings (kept float16); the Linear weights shrink ~7x
    quantized, _, _ = read_quantized(rtn_folder)
    assert {q.bits for q in quantized.values()} == {4}
    assert (rtn_folder / "model.safetensors").stat().st_size < 0.5 * (
        tiny_llama_dir / "model.safetensors"
    ).stat().st_size


def test_other_quantization_methods_are_refused(rtn_folder, tmp_path):
    handle = _edit_config(rtn_folder, tmp_path, lambda q: q.update(quant_method="bitsandbytes"))
    with pytest.raises(OlivepressError, match="bitsandbytes"):
        load_causal_lm(handle)


def test_unknown_awq_version_is_refused(rtn_folder, tmp_path):
    handle = _edit_config(rtn_folder, tmp_path, lambda q: q.update(version="gemv"))
    with pytest.raises(OlivepressError, match="gemv"):
        load_causal_lm(handle)


def test_mismatched_group_size_is_refused(rtn_folder, tmp_path):
    handle = _edit_config(rtn_folder, tmp_path, lambda q: q.update(group_size=16))
    with pytest.raises(OlivepressError, match="do not fit together"):
        load_causal_lm(handle)


def test_dynamic_overrides_use_one_pattern_per_module_kind():
    w = torch.randn(16, 64)
    names = [f"model.layers.{i}.self_attn.{p}" for i in range(3) for p in ("q_proj", "o_proj")]
    quantized = {n: quantize_weight(w, Grid(4, 64 if "q_proj" in n else 128)) for n in names}
    quantized["model.layers.0.self_attn.o_proj"] = quantize_weight(w, Grid(4, 32))
    dynamic = gptq_dynamic(
        quantized, ["model.layers.2.mlp.down_proj"], bits=4, group_size=128, sym=False, sym_of={}
    )
    assert dynamic == {
        r"+:model\.layers\.\d+\.self_attn\.q_proj\b": {"bits": 4, "group_size": 64, "sym": False},
        r"+:model\.layers\.0\.self_attn\.o_proj\b": {"bits": 4, "group_size": 32, "sym": False},
        r"-:model\.layers\.2\.mlp\.down_proj\b": {},
    }


# --- perplexity ---------------------------------------------------------------------------


def test_perplexity_of_one_window_is_exp_of_the_model_loss(tiny_llama_dir):
    handle = HfModel(path=str(tiny_llama_dir))
    model, tokenizer = load_causal_lm(handle), load_tokenizer(handle)
    text = "Paris is the capital of France and Rome is the capital of Italy."
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = math.exp(model(input_ids=ids, labels=ids).loss.item())
    assert perplexity(model, tokenizer, text, seq_len=128) == pytest.approx(expected, rel=1e-5)
    assert perplexity(handle, None, text, seq_len=128) == pytest.approx(expected, rel=1e-5)


def test_sliding_window_scores_every_token_once(tiny_llama_dir):
    handle = HfModel(path=str(tiny_llama_dir))
    model, tokenizer = load_causal_lm(handle), load_tokenizer(handle)
    text = " ".join(["Travel light, book early, and carry a map of the city."] * 30)
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    # stride == seq_len: disjoint windows, each scoring all its tokens but its first
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, ids.numel() - 1, 64):
            window = ids[start : start + 64].unsqueeze(0)
            nll += model(input_ids=window, labels=window).loss.item() * (window.shape[1] - 1)
            count += window.shape[1] - 1
    assert perplexity(model, tokenizer, text, seq_len=64, stride=64) == pytest.approx(
        math.exp(nll / count), rel=1e-5
    )
    # overlapping windows score every token after the first exactly once, with more context
    assert math.isfinite(perplexity(model, tokenizer, text, seq_len=64, stride=16))


def test_perplexity_rejects_a_bad_stride(tiny_llama_dir):
    handle = HfModel(path=str(tiny_llama_dir))
    with pytest.raises(OlivepressError, match="stride"):
        perplexity(handle, None, "some text here", seq_len=16, stride=32)

"""Resolving what a user names into a model, and content fingerprints."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from olivepress.errors import OlivepressError
from olivepress.models import gguf as gguf_input
from olivepress.models.fingerprint import file_digest, folder_fingerprint
from olivepress.models.handles import HfModel, OnnxModel
from olivepress.models.resolve import resolve_model


def test_local_hf_folder(tiny_llama_dir):
    handle = resolve_model(str(tiny_llama_dir))
    assert isinstance(handle, HfModel) and handle.path == str(tiny_llama_dir)


def test_adapter_folder_given_as_model_is_explained(tiny_lora_dir):
    with pytest.raises(OlivepressError, match="is a PEFT adapter, not a model"):
        resolve_model(str(tiny_lora_dir))


def test_missing_adapter_path(tiny_llama_dir, tmp_path):
    with pytest.raises(OlivepressError, match="adapter path .* does not exist"):
        resolve_model(str(tiny_llama_dir), adapter_path=str(tmp_path / "nope"))


def use_hub_cache(monkeypatch, folder) -> None:
    # huggingface_hub reads HF_HUB_CACHE once, at import; point its constant at our folder.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(folder))


def test_hub_id_not_in_the_local_cache_says_how_to_get_it(tmp_path, monkeypatch):
    use_hub_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(
        OlivepressError,
        match="'someone/some-model' is not a local folder and is not in the Hugging Face cache",
    ):
        resolve_model("someone/some-model")


def test_hub_id_in_the_local_cache(tmp_path, tiny_llama_dir, monkeypatch):
    # Lay the folder out as huggingface_hub's cache does, then resolve offline.
    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_llama_dir, snapshot)
    (cache / "models--someone--tiny" / "refs").mkdir()
    (cache / "models--someone--tiny" / "refs" / "main").write_text("0" * 40)
    use_hub_cache(monkeypatch, cache)
    handle = resolve_model("someone/tiny")
    assert isinstance(handle, HfModel) and (handle.folder / "config.json").is_file()


def test_missing_gguf_file(tmp_path):
    with pytest.raises(OlivepressError, match="GGUF file .*missing.gguf does not exist"):
        resolve_model(str(tmp_path / "missing.gguf"))


def test_a_gguf_of_an_architecture_transformers_cannot_read_is_one_line(tmp_path, monkeypatch):
    import gguf

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "rwkv.gguf"
    writer = gguf.GGUFWriter(str(path), "rwkv7")  # a real llama.cpp architecture transformers lacks
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b", "c"])
    writer.add_token_types([1, 1, 1])
    writer.add_token_merges(["a b"])
    writer.add_tensor("token_embd.weight", np.zeros((3, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(OlivepressError, match=r"cannot read .*rwkv.gguf as a GGUF model \(.*rwkv7") as caught:
        resolve_model(str(path))
    assert "\n" not in str(caught.value)
    assert not list((tmp_path / "cache").rglob("config.json"))  # no half-converted folder kept


def test_onnx_folder(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    assert isinstance(resolve_model(str(tmp_path)), OnnxModel)


def test_fingerprint_follows_content_and_is_memoised(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    weights = folder / "w.bin"
    weights.write_bytes(b"a" * 1000)
    first = folder_fingerprint(folder)
    assert folder_fingerprint(folder) == first
    weights.write_bytes(b"b" * 1000)
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    assert folder_fingerprint(folder) != first


def test_file_digest_is_not_recomputed_for_an_unchanged_file(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 100)
    digest = file_digest(path)
    stat = path.stat()
    # Same size and mtime with other bytes: the memo (path, size, mtime) answers without reading.
    path.write_bytes(b"y" * 100)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_digest(path) == digest


def test_an_olivepress_output_folder_stands_for_its_model(tmp_path, tiny_llama_dir):
    from olivepress.api import run

    out = tmp_path / "out"
    config = {
        "input_model": {"model_path": str(tiny_llama_dir)},
        "passes": {"b": {"type": "ModelBuilder", "precision": "fp32"}},
        "output_dir": str(out),
        "cache_dir": str(tmp_path / "cache"),
    }
    run(config, summary=False)
    handle = resolve_model(str(out))
    assert isinstance(handle, OnnxModel) and handle.path == str(out / "model")


def _two_copy_gguf(path: Path, head: np.ndarray, embeddings: np.ndarray) -> Path:
    """A GGUF holding lm_head in Q8_0 and the embeddings in Q5_0 (only the tensors are read)."""
    import gguf
    from gguf.quants import quantize

    writer = gguf.GGUFWriter(str(path), "llama")
    for name, matrix, kind in (
        ("output.weight", head, gguf.GGMLQuantizationType.Q8_0),
        ("token_embd.weight", embeddings, gguf.GGMLQuantizationType.Q5_0),
    ):
        writer.add_tensor(name, quantize(matrix, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _untied_tiny_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    shape = {"hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, tie_word_embeddings=False, **shape))


def test_a_gguf_holding_one_matrix_twice_converts_to_a_tied_model_with_the_finer_copy(tmp_path):
    import torch
    from safetensors import safe_open

    model = _untied_tiny_llama()
    with torch.no_grad():  # two copies of one matrix, a few percent apart as quantization leaves them
        shared = torch.randn(64, 64)
        model.lm_head.weight.copy_(shared)
        model.get_input_embeddings().weight.copy_(shared + 0.03 * torch.randn(64, 64))
    head = model.lm_head.weight.detach().clone()
    gguf_file = _two_copy_gguf(tmp_path / "m.gguf", head.numpy(), shared.numpy())
    gguf_input._tie_copies_of_one_matrix(model, gguf_file)
    assert model.config.tie_word_embeddings
    assert torch.equal(model.get_input_embeddings().weight, head)  # output.weight, Q8_0, is the finer
    model.save_pretrained(tmp_path / "saved")
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as saved:
        assert "lm_head.weight" not in set(saved.keys())  # stored once


def test_an_untied_models_different_head_stays_untied(tmp_path):
    import torch

    model = _untied_tiny_llama()
    before = model.lm_head.weight.detach().clone()
    gguf_file = _two_copy_gguf(
        tmp_path / "m.gguf", before.numpy(), model.get_input_embeddings().weight.detach().numpy()
    )
    gguf_input._tie_copies_of_one_matrix(model, gguf_file)
    assert not model.config.tie_word_embeddings
    assert torch.equal(model.lm_head.weight, before)

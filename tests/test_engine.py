"""The engine: passes through the cache, resume after a kill, output folder and footprint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from olivepress.api import run
from olivepress.errors import OlivepressError


def workflow(tmp_path: Path, model: Path, adapter: Path | None = None, **builder) -> dict:
    passes = {"builder": {"type": "ModelBuilder", "precision": "fp32", **builder}}
    if adapter is not None:
        passes = {"merge": {"type": "MergeAdapterWeights"}, **passes}
    return {
        "input_model": {
            "type": "HfModel",
            "model_path": str(model),
            "adapter_path": str(adapter) if adapter else None,
        },
        "passes": passes,
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "out"),
    }


def test_run_writes_model_and_footprint_then_reuses_every_pass(tmp_path, tiny_llama_dir, tiny_lora_dir):
    config = workflow(tmp_path, tiny_llama_dir, tiny_lora_dir)
    first = run(config, summary=False)
    out = tmp_path / "out"
    assert (out / "model" / "genai_config.json").is_file()
    assert (out / "model" / "model.onnx").is_file()
    footprint = json.loads((out / "footprint.json").read_text())
    assert [n["pass_type"] for n in footprint["nodes"]] == ["MergeAdapterWeights", "ModelBuilder"]
    assert [n["from_cache"] for n in footprint["nodes"]] == [False, False]
    assert footprint["nodes"][1]["parent_model_id"] == footprint["nodes"][0]["model_id"]
    assert footprint["output_model"]["path"] == str(out / "model")

    second = run(config, summary=False)
    assert [n.from_cache for n in second.flows[0].nodes] == [True, True]
    assert second.model.path == first.model.path
    assert (out / "model" / "genai_config.json").is_file()


def test_changing_one_pass_reruns_only_from_there(tmp_path, tiny_llama_dir, tiny_lora_dir):
    run(workflow(tmp_path, tiny_llama_dir, tiny_lora_dir), summary=False)
    changed = run(workflow(tmp_path, tiny_llama_dir, tiny_lora_dir, precision="int4"), summary=False)
    assert [n.from_cache for n in changed.flows[0].nodes] == [True, False]


def test_clean_cache_reruns_everything(tmp_path, tiny_llama_dir):
    config = workflow(tmp_path, tiny_llama_dir)
    run(config, summary=False)
    again = run(config, clean_cache=True, summary=False)
    assert [n.from_cache for n in again.flows[0].nodes] == [False]


def test_search_options_land_in_genai_config(tmp_path, tiny_llama_dir):
    config = workflow(tmp_path, tiny_llama_dir, search={"max_length": 64, "top_k": 1})
    result = run(config, summary=False)
    search = json.loads((Path(result.model.path) / "genai_config.json").read_text())["search"]
    assert search["max_length"] == 64 and search["top_k"] == 1


def test_killed_run_resumes_at_the_unfinished_pass(tmp_path, tiny_llama_dir, tiny_lora_dir):
    config_file = tmp_path / "w.json"
    config_file.write_text(json.dumps(workflow(tmp_path, tiny_llama_dir, tiny_lora_dir)))
    command = [sys.executable, "-m", "olivepress", "run", "--config", str(config_file)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        seen.append(line)
        if "[2/2] builder (ModelBuilder): running" in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "the run never reached its second pass"
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    runs = tmp_path / "cache" / "runs"
    finished = [p for p in runs.iterdir() if (p / "result.json").is_file()]
    assert len(finished) == 1  # the merge pass; the killed builder left no entry
    assert not (tmp_path / "out").exists()

    result = run(config_file, summary=False)
    assert [n.from_cache for n in result.flows[0].nodes] == [True, False]
    assert not [p for p in runs.iterdir() if ".tmp-" in p.name]  # the abandoned temp folder is gone


def test_output_dir_with_foreign_files_is_refused_before_any_work(tmp_path, tiny_llama_dir):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(OlivepressError, match="already holds files that olivepress did not write"):
        run(workflow(tmp_path, tiny_llama_dir), summary=False)
    assert not (tmp_path / "cache").exists()


def test_unwritable_output_dir_is_refused_before_any_work(tmp_path, tiny_llama_dir):
    config = {**workflow(tmp_path, tiny_llama_dir), "output_dir": "/proc/olivepress-test/out"}
    with pytest.raises(OlivepressError, match="output_dir /proc/olivepress-test/out is not writable"):
        run(config, summary=False)


def test_merge_adapter_weights_matches_peft(tmp_path, tiny_llama_dir, tiny_lora_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = workflow(tmp_path, tiny_llama_dir, tiny_lora_dir)
    config["passes"] = {"merge": {"type": "MergeAdapterWeights"}}
    merged_dir = Path(run(config, summary=False).model.path)
    assert not (merged_dir / "adapter_config.json").exists()
    ids = torch.tensor([[1, 5, 9, 14, 27, 3]])
    with torch.no_grad():
        reference = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_llama_dir), tiny_lora_dir
        )(ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir)(ids).logits
    assert torch.allclose(merged, reference, atol=1e-5)
    assert not torch.allclose(merged, base, atol=1e-3)  # the adapter really changed the model


def test_merge_without_adapter_says_what_to_do(tmp_path, tiny_llama_dir):
    config = workflow(tmp_path, tiny_llama_dir)
    config["passes"] = {"merge": {"type": "MergeAdapterWeights"}}
    with pytest.raises(OlivepressError, match="needs a model with a PEFT adapter"):
        run(config, summary=False)


def test_onnx_model_into_an_hf_pass_is_refused(tmp_path, tiny_llama_dir):
    built = run(workflow(tmp_path, tiny_llama_dir), summary=False)
    config = {
        "input_model": {"type": "OnnxModel", "model_path": built.model.path},
        "passes": {"builder": {"type": "ModelBuilder"}},
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "out2"),
    }
    with pytest.raises(OlivepressError, match="takes a hf model but gets onnx"):
        run(config, summary=False)


def test_cache_key_follows_the_target_provider():
    from olivepress.engine.flows import _key_context
    from olivepress.passes.base import PassContext

    cpu = _key_context({}, PassContext(execution_provider="CPUExecutionProvider"))
    dml = _key_context({}, PassContext(execution_provider="DmlExecutionProvider"))
    assert cpu != dml


def test_cache_key_follows_named_data_files(tmp_path):
    from olivepress.data.config import DataConfig
    from olivepress.engine.flows import _key_context
    from olivepress.passes.base import PassContext

    data_file = tmp_path / "d.jsonl"
    data_file.write_text('{"text": "one"}\n')
    data = DataConfig(name="calib", load_dataset_config={"data_files": str(data_file)})
    ctx = PassContext(data_configs={"calib": data})
    before = _key_context({"data_config": "calib"}, ctx)
    assert _key_context({"data_config": None}, ctx)["data_configs"] == {}
    data_file.write_text('{"text": "two, and longer"}\n')
    assert _key_context({"data_config": "calib"}, ctx) != before

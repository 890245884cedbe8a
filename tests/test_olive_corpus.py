"""The corpus of Olive's public recipe configs (tests/olive_recipes/corpus, byte-for-byte copies;
sources.json says where each came from): with only the model path swapped, each one either gets
through everything `olivepress run` checks before its first pass, or stops there with exactly its
recorded one line. benchmarks/olive_corpus.py runs them all; docs/benchmarks.md has the results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from olivepress.errors import OlivepressError
from olivepress.workflow.load import load_workflow
from olivepress.workflow.preflight import check_data_configs, check_evaluation_provider, check_lm_eval_tasks

CORPUS = Path(__file__).parent / "olive_recipes" / "corpus"
SOURCES = json.loads((CORPUS / "sources.json").read_text())
CONFIGS = sorted(path.name for path in CORPUS.glob("*.json") if path.name != "sources.json")

_GUANACO = (
    "data config 'train_data' names the hub data set 'timdettmers/openassistant-guanaco' and no "
    "data_files, and olivepress reads only local files: save it once while online (datasets.load_dataset("
    "'timdettmers/openassistant-guanaco', split='train').to_json('data.jsonl')) and set its "
    "load_dataset_config.data_files to that file (only wikitext, for calibration, falls back to shipped text)"
)
_TINY_CODES = _GUANACO.replace("'train_data'", "'tiny_codes_train'").replace(
    "timdettmers/openassistant-guanaco", "nampdn-ai/tiny-codes"
)

_NO_CUDA = (
    "the evaluator would run the ONNX output with CUDAExecutionProvider, which this onnxruntime does not "
    f"have ({', '.join(ort.get_available_providers())}); run the workflow where it has, set the system's "
    "execution_providers to one of these, or drop the evaluator to only build the model"
)
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()

# config -> None (gets through the checks before the first pass) or the one line it stops with.
# The lm-eval tasks the *_with_eval and lmeval configs name (mmlu, hellaswag, wmt18) are checked before
# the passes too, but need lm-eval's task index: test_an_lm_eval_task_without_its_data_stops_before_passes.
EXPECTED: dict[str, str | None] = {
    "HuggingFaceTB-SmolLM3-3B_cpu_fp32.json": None,
    "HuggingFaceTB-SmolLM3-3B_cpu_fp32_with_eval.json": None,
    "HuggingFaceTB-SmolLM3-3B_cpu_int4_with_eval.json": None,
    "Llama-3.2-1B-Instruct_olive_dora.json": _GUANACO,
    "Llama-3.2-1B-Instruct_olive_hqq.json": None,
    "Llama-3.2-1B-Instruct_olive_lmeval.json": None,
    "Llama-3.2-1B-Instruct_olive_lmeval_onnx.json": None if HAS_CUDA else _NO_CUDA,
    "Llama-3.2-1B-Instruct_olive_loha.json": _GUANACO,
    "Llama-3.2-1B-Instruct_olive_lokr.json": _GUANACO,
    "Llama-3.2-1B-Instruct_olive_mixed.json": (
        "Olive pass 'QuaRot' is not available in olivepress: rotations are not implemented; use GPTQ or AWQ"
    ),
    "Llama-3.2-1B-Instruct_olive_qlora.json": _GUANACO,
    "Llama-3.2-1B-Instruct_olive_rtn.json": None,
    "Meta-Llama-3-8B_olive_model_builder_int4.json": None,
    "Qwen-Qwen3-0.6B_cpu_int4.json": None,
    "allenai-Olmo-3-7B-Instruct_cpu_fp32.json": None,
    "allenai-Olmo-3-7B-Instruct_cpu_int4.json": None,
    "google-gemma-3-1b-it_model_builder_cpu_fp32.json": None,
    "nvidia-Mistral-NeMo-12B-Instruct_cpu_int4_with_eval.json": None,
    "olive_examples_llama2_qlora.json": _GUANACO,
    "olive_examples_open_llama_lora_tinycodes.json": _TINY_CODES,
    "olive_examples_opt_125m_awq.json": None,
    "olive_examples_opt_125m_gptq.json": None,
    "tencent-HY-MT1.5-1.8B_cpu_fp32_with_eval.json": None,
    "tencent-HY-MT1.5-1.8B_cpu_int4.json": None,
}


def swapped(name: str, model: str = "default") -> dict:
    """The corpus config with input_model.model_path (the only key naming a model) set to `model`."""
    raw = json.loads((CORPUS / name).read_text())
    raw["input_model"]["model_path"] = model
    return raw


def test_every_corpus_config_has_a_source_and_an_expectation():
    assert len(CONFIGS) >= 15
    assert set(CONFIGS) == set(SOURCES), "sources.json must list exactly the corpus files"
    assert set(CONFIGS) == set(EXPECTED), "record what each corpus config does in EXPECTED"
    for name, source in SOURCES.items():
        assert source["repo"] in ("microsoft/olive-recipes", "microsoft/Olive"), name
        assert len(source["commit"]) == 40 and source["license"] == "MIT" and source["path"], name


@pytest.mark.parametrize("name", CONFIGS)
def test_corpus_config_gets_to_its_first_pass_or_stops_with_its_line(name):
    if name not in EXPECTED:
        pytest.fail(f"{name} has no recorded expectation in EXPECTED")
    expected = EXPECTED[name]
    if expected is None:
        _checks_before_the_first_pass(name)
        return
    with pytest.raises(OlivepressError) as raised:
        _checks_before_the_first_pass(name)
    assert str(raised.value) == expected
    assert "\n" not in str(raised.value)


def _checks_before_the_first_pass(name: str) -> None:
    workflow = load_workflow(swapped(name))
    check_data_configs(workflow)
    check_evaluation_provider(workflow)


def test_a_hub_data_set_stops_the_run_before_any_pass(tmp_path):
    (tmp_path / "qlora.json").write_text(json.dumps(swapped("Llama-3.2-1B-Instruct_olive_qlora.json")))
    result = subprocess.run(
        [sys.executable, "-m", "olivepress", "run", "--config", "qlora.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"olivepress run: error: {_GUANACO}"
    assert "(QLoRA): running" not in result.stdout + result.stderr  # no pass started
    assert not (tmp_path / "models").exists()


def test_an_lm_eval_task_without_its_data_stops_before_passes(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "absent.yaml").write_text(
        "task: olivepress_absent_task\ndataset_path: olivepress-tests/no-such-data-set\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: q\ndoc_to_choice: [a, b]\n"
        "doc_to_target: 0\nmetric_list:\n  - metric: acc\n"
    )
    raw = swapped("Llama-3.2-1B-Instruct_olive_lmeval.json")
    raw["evaluators"]["evaluator"].update(tasks=["olivepress_absent_task"], include_path=[str(tasks)])
    workflow = load_workflow(raw)
    with pytest.raises(OlivepressError, match=r"needs the data set 'olivepress-tests/no-such-data-set'"):
        check_lm_eval_tasks(workflow)
    raw["evaluators"]["evaluator"].update(tasks=["olivepress_travel_mc"], include_path=[])
    check_lm_eval_tasks(load_workflow(raw))  # the shipped task has its data


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["HuggingFaceTB-SmolLM3-3B_cpu_fp32.json", "Meta-Llama-3-8B_olive_model_builder_int4.json"]
)
def test_cheapest_corpus_configs_run_unchanged_on_the_embedded_model(name, tmp_path):
    from olivepress.runtime.generate import GenAIModel, SearchOptions

    (tmp_path / name).write_text(json.dumps(swapped(name)))
    result = subprocess.run(
        [sys.executable, "-m", "olivepress", "run", "--config", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [footprint] = list(tmp_path.rglob("footprint.json"))
    model_dir = footprint.parent / "model"
    assert (model_dir / "genai_config.json").is_file()
    text = GenAIModel(model_dir).generate("The capital of France is", SearchOptions(max_new_tokens=8)).text
    assert text.strip()

"""Evaluators: metric math, backends (PyTorch, ONNX Runtime, ORT GenAI), goals, the
benchmark and evaluate commands, and the user-code permission."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from olivepress.errors import OlivepressError
from olivepress.evaluate.accuracy import rouge_l, score
from olivepress.evaluate.config import EvaluatorConfig, Goal
from olivepress.evaluate.evaluator import evaluate_model
from olivepress.evaluate.goals import describe_goal, goal_bound, goal_met
from olivepress.evaluate.timing import percentile
from olivepress.models.handles import HfModel, OnnxModel
from test_cli import assert_one_line_error, olivepress, write


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory, tiny_llama_dir) -> Path:
    """The tiny Llama as an fp32 ORT GenAI folder: the same function as the PyTorch model."""
    from olivepress.api import run

    root = tmp_path_factory.mktemp("eval")
    config = {
        "input_model": {"model_path": str(tiny_llama_dir)},
        "passes": {"builder": {"type": "ModelBuilder", "precision": "fp32"}},
        "output_dir": str(root / "out"),
        "cache_dir": str(root / "cache"),
    }
    run(config, summary=False, log_level=3)
    return root / "out" / "model"


@pytest.mark.parametrize(
    ("kind", "value", "higher", "bound"),
    [
        ("threshold", 5, True, 5),
        ("min-improvement", 2, True, 12),
        ("max-degradation", 2, True, 8),
        ("percent-min-improvement", 10, True, 11),
        ("percent-max-degradation", 10, True, 9),
        ("min-improvement", 2, False, 8),
        ("max-degradation", 2, False, 12),
        ("percent-min-improvement", 10, False, 9),
        ("percent-max-degradation", 10, False, 11),
    ],
)
def test_goal_bounds_are_relative_to_the_input_model(kind, value, higher, bound):
    goal = Goal(type=kind, value=value)
    assert goal_bound(goal, 10.0, higher) == pytest.approx(bound)
    assert goal_met(goal, bound, 10.0, higher)
    worse = bound - 0.01 if higher else bound + 0.01
    assert not goal_met(goal, worse, 10.0, higher)


def test_goal_text_and_missing_baseline():
    goal = Goal(type="percent-max-degradation", value=10)
    assert describe_goal(goal, 20.0, False) == "<= 22 (input 20, at most 10% worse)"
    with pytest.raises(OlivepressError, match="relative to the input model"):
        goal_bound(goal, None, False)


def test_rouge_l_and_accuracy_scores():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("completely different", "the cat") == 0.0
    # LCS "the cat the mat" = 4 words of 6 and of 5: F1 = 2 * (4/6) * (4/5) / (4/6 + 4/5)
    assert rouge_l("the cat sat on the mat", "the cat ate the mat") == pytest.approx(
        2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5)
    )
    scores = score(["Joy! I am glad", "fear", "Sad."], ["joy", "surprise", "sad"])
    assert scores["accuracy_score"] == pytest.approx(2 / 3)
    assert scores["exact_match"] == pytest.approx(1 / 3)


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 11)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (5.0, 9.0, 10.0)


def test_windowed_perplexity_from_logits_matches_pytorch(tiny_llama_dir):
    import torch

    from olivepress.evaluate.perplexity import perplexity, perplexity_of_logits
    from olivepress.models.loading import load_causal_lm, load_tokenizer

    handle = HfModel(path=str(tiny_llama_dir))
    model, tokenizer = load_causal_lm(handle, dtype=torch.float32), load_tokenizer(handle)
    text = "Paris is the capital of France and Rome is the capital of Italy. " * 8
    ids = tokenizer(text).input_ids
    with torch.no_grad():

        def logits_of(window):
            return model(input_ids=torch.tensor([window])).logits[0].numpy()

        generic = perplexity_of_logits(logits_of, ids, seq_len=32, stride=16)
    assert generic == pytest.approx(perplexity(model, tokenizer, text, seq_len=32, stride=16), rel=1e-5)


EVERYTHING = {
    "metrics": [
        {
            "name": "lat",
            "type": "latency",
            "warmup_runs": 1,
            "timed_runs": 4,
            "prompt_tokens": 16,
            "decode_tokens": 4,
        },
        {
            "name": "speed",
            "type": "throughput",
            "warmup_runs": 1,
            "timed_runs": 3,
            "prompt_tokens": 16,
            "decode_tokens": 4,
        },
        {"name": "ppl", "type": "perplexity", "seq_len": 64},
        {"name": "size", "type": "size_on_disk"},
        {"name": "memory", "type": "peak_memory", "prompt_tokens": 8, "decode_tokens": 2},
    ]
}


def _check_everything(results, folder: Path) -> None:
    assert set(results) == {
        "lat.avg",
        "lat.p50",
        "lat.p90",
        "lat.p99",
        "speed.decode_tokens_per_s",
        "speed.prefill_tokens_per_s",
        "ppl.perplexity",
        "size.size_mb",
        "memory.peak_rss_mb",
    }
    assert 0 < results["lat.p50"].value <= results["lat.p90"].value <= results["lat.p99"].value
    assert not results["lat.avg"].higher_is_better and results["speed.decode_tokens_per_s"].higher_is_better
    assert results["speed.decode_tokens_per_s"].value > 0 and results["memory.peak_rss_mb"].value >= 0
    on_disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
    assert results["size.size_mb"].value == pytest.approx(on_disk)


def test_every_metric_on_pytorch_ort_genai_and_onnxruntime_agree_on_perplexity(tiny_llama_dir, fp32_onnx):
    evaluator = EvaluatorConfig.model_validate(EVERYTHING)
    torch_results = evaluate_model(HfModel(path=str(tiny_llama_dir)), evaluator)
    genai_results = evaluate_model(OnnxModel(path=str(fp32_onnx)), evaluator)
    _check_everything(torch_results, tiny_llama_dir)
    _check_everything(genai_results, fp32_onnx)
    # fp32 ONNX is the PyTorch model: the decoder run with an empty past gives the same logits.
    assert genai_results["ppl.perplexity"].value == pytest.approx(
        torch_results["ppl.perplexity"].value, rel=1e-3
    )
    # The plain ONNX Runtime session times generation with its own past key/values.
    session = EvaluatorConfig.model_validate(
        {"metrics": [{**EVERYTHING["metrics"][1], "backend": "onnxruntime"}]}
    )
    assert evaluate_model(OnnxModel(path=str(fp32_onnx)), session)["speed.decode_tokens_per_s"].value > 0


def test_accuracy_by_generation_on_records(fp32_onnx, tmp_path):
    records = tmp_path / "qa.jsonl"
    records.write_text(
        "\n".join(json.dumps({"question": q, "answer": a}) for q, a in [("Paris is", "x"), ("Rome is", "y")])
    )
    evaluator = EvaluatorConfig.model_validate(
        {
            "metrics": [
                {
                    "name": "acc",
                    "type": "accuracy",
                    "sub_types": ["accuracy_score", "exact_match", "rouge_l"],
                    "prompt_template": "Q: {question}\nA:",
                    "label_field": "answer",
                    "max_new_tokens": 4,
                    "data_config": {"name": "qa", "load_dataset_config": {"data_files": str(records)}},
                }
            ]
        }
    )
    results = evaluate_model(OnnxModel(path=str(fp32_onnx)), evaluator)
    assert all(
        0.0 <= results[f"acc.{name}"].value <= 1.0 for name in ("accuracy_score", "exact_match", "rouge_l")
    )
    bad = EvaluatorConfig.model_validate(
        {"metrics": [{**evaluator.metrics[0].model_dump(), "label_field": "label"}]}
    )
    with pytest.raises(OlivepressError, match="no field"):
        evaluate_model(OnnxModel(path=str(fp32_onnx)), bad)


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (
            {
                "name": "p",
                "type": "perplexity",
                "sub_types": [{"name": "perplexty", "goal": {"type": "threshold", "value": 1}}],
            },
            "no sub-type 'perplexty' .*did you mean 'perplexity'",
        ),
        ({"name": "a", "type": "accuracy"}, "needs a data_config"),
        ({"name": "c", "type": "custom", "sub_types": ["score"]}, "needs user_script"),
        (
            {
                "name": "l",
                "type": "latency",
                "sub_types": [{"name": "avg", "goal": {"type": "at-most", "value": 1}}],
            },
            "goal",
        ),
    ],
)
def test_bad_metric_configs_are_one_line_errors(tmp_path, tiny_llama_dir, metric, message):
    config = {
        "input_model": {"model_path": str(tiny_llama_dir)},
        "evaluators": {"e": {"metrics": [metric]}},
        "evaluator": "e",
    }
    assert_one_line_error(olivepress("evaluate", "--config", write(tmp_path, config)), message)


def _custom_metric_config(tmp_path: Path, model: Path) -> str:
    script = tmp_path / "my_metric.py"
    script.write_text(
        "def files(model, bonus=0):\n    import os\n    return {'files': len(os.listdir(model.path)) + "
        "bonus}\n"
    )
    metric = {
        "name": "mine",
        "type": "custom",
        "sub_types": [{"name": "files", "goal": {"type": "threshold", "value": 1}}],
        "user_config": {
            "user_script": str(script),
            "evaluate_func": "files",
            "evaluate_func_kwargs": {"bonus": 100},
        },
    }
    config = {
        "input_model": {"model_path": str(model)},
        "evaluators": {"e": {"metrics": [metric]}},
        "engine": {"evaluator": "e", "output_dir": str(tmp_path / "out")},
    }
    return write(tmp_path, config)


def test_user_code_runs_only_with_permission(tmp_path, tiny_llama_dir):
    config = _custom_metric_config(tmp_path, tiny_llama_dir)
    refused = olivepress("evaluate", "--config", config)
    assert_one_line_error(refused, r"runs Python code .*my_metric\.py.*--allow-user-code")
    assert not (tmp_path / "out").exists()
    assert_one_line_error(olivepress("run", "--config", config), "--allow-user-code")
    allowed = olivepress("evaluate", "--config", config, "--allow-user-code")
    assert allowed.returncode == 0, allowed.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]
    assert metrics["mine.files"]["value"] == len(list(tiny_llama_dir.iterdir())) + 100


def test_allow_user_code_in_the_config_is_permission(tmp_path, tiny_llama_dir):
    path = Path(_custom_metric_config(tmp_path, tiny_llama_dir))
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "allow_user_code": True}))
    assert olivepress("evaluate", "--config", str(path)).returncode == 0


def test_benchmark_command_prints_a_table_and_writes_json(fp32_onnx, tmp_path):
    out = tmp_path / "bench.json"
    result = olivepress(
        "benchmark",
        "-m",
        str(fp32_onnx),
        "--metrics",
        "latency,throughput,size_on_disk,perplexity",
        "--warmup-runs",
        "1",
        "--timed-runs",
        "3",
        "--prompt-tokens",
        "8",
        "--decode-tokens",
        "4",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "latency.p50" in result.stderr and "throughput.decode_tokens_per_s" in result.stderr
    data = json.loads(out.read_text())
    assert data["model"]["kind"] == "onnx"
    assert math.isfinite(data["metrics"]["perplexity.perplexity"]["value"])
    assert_one_line_error(
        olivepress("benchmark", "-m", str(fp32_onnx), "--metrics", "latencyy"), "did you mean 'latency'"
    )
    assert_one_line_error(
        olivepress("benchmark", "-m", str(fp32_onnx), "--metrics", "accuracy"), "needs --data_files"
    )

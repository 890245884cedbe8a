"""The lm-eval harness on olivepress's backends: the LM interface (log-likelihoods, rolling
log-likelihoods, generation) against direct computations, the shipped task on PyTorch, ONNX
Runtime and ORT GenAI, Olive's LMEvaluator shape in workflows, and the offline error."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from olivepress.errors import OlivepressError  # noqa: E402
from olivepress.evaluate.backends import GenAIBackend, SessionBackend, TorchBackend  # noqa: E402
from olivepress.evaluate.config import EvaluatorConfig  # noqa: E402
from olivepress.evaluate.evaluator import evaluate_model  # noqa: E402
from olivepress.evaluate.lm_evaluator import lm_evaluator_metrics  # noqa: E402
from olivepress.models.handles import HfModel, OnnxModel  # noqa: E402
from test_cli import assert_one_line_error, olivepress, write  # noqa: E402

TASK = "olivepress_travel_mc"


@pytest.fixture(scope="module")
def onnx_builds(tmp_path_factory, tiny_llama_dir) -> dict[str, Path]:
    """The tiny Llama as a plain ONNX causal LM (OnnxConversion, no KV cache) and as an fp32
    ORT GenAI folder (ModelBuilder): both the same function as the PyTorch model."""
    from olivepress.api import run

    root = tmp_path_factory.mktemp("lm")
    builds = {}
    for name, passes in (
        ("plain", {"conv": {"type": "OnnxConversion"}}),
        ("genai", {"builder": {"type": "ModelBuilder", "precision": "fp32"}}),
    ):
        run(
            {
                "input_model": {"model_path": str(tiny_llama_dir)},
                "passes": passes,
                "output_dir": str(root / name),
                "cache_dir": str(root / "cache"),
            },
            summary=False,
            log_level=3,
        )
        builds[name] = root / name / "model"
    assert not (builds["plain"] / "genai_config.json").exists()
    return builds


def _lm(backend, **kwargs):
    from olivepress.evaluate.harness_model import BackendLM

    return BackendLM(backend, **kwargs)


def _instances(kind: str, arguments: list[tuple]) -> list:
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=args, idx=i) for i, args in enumerate(arguments)]


def _direct_loglikelihood(model, ids: list[int], continuation_tokens: int) -> tuple[float, bool]:
    """Σ log p(token) over the last `continuation_tokens` of `ids`, straight from PyTorch."""
    import torch

    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    targets = ids[-continuation_tokens:]
    rows = log_probs[len(ids) - 1 - continuation_tokens : len(ids) - 1]
    picked = rows[torch.arange(continuation_tokens), torch.tensor(targets)]
    return float(picked.sum()), bool((rows.argmax(-1) == torch.tensor(targets)).all())


PAIRS = [
    ("Paris is the capital of", " France"),
    ("Travel light, book", " early, and carry a map"),
    ("The quick brown fox", " jumps over the lazy dog."),
    ("What is the best", " thing to see in Chicago?"),
]


def test_loglikelihood_is_the_direct_sum_at_every_batch_size_and_max_length(tiny_llama_dir):
    backend = TorchBackend(HfModel(path=str(tiny_llama_dir)))
    tokenizer = backend.tokenizer
    expected = []
    for context, continuation in PAIRS:
        context_ids = tokenizer.encode(context, add_special_tokens=False)
        whole = tokenizer.encode(context + continuation, add_special_tokens=False)
        expected.append(_direct_loglikelihood(backend.model, whole, len(whole) - len(context_ids)))
    requests = _instances("loglikelihood", PAIRS)
    for batch_size in (1, 3, 8):
        got = _lm(backend, batch_size=batch_size).loglikelihood(requests, disable_tqdm=True)
        for (value, greedy), (want, want_greedy) in zip(got, expected, strict=True):
            assert value == pytest.approx(want, abs=1e-4) and greedy == want_greedy
    # max_length cuts the sequence from the left, as lm-eval's own HF model does: the model reads
    # max_length tokens, the last max_length + 1 of context and continuation less the final one.
    context, continuation = PAIRS[1]
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    scored = len(whole) - len(tokenizer.encode(context, add_special_tokens=False))
    ((value, _),) = _lm(backend, max_length=scored + 1).loglikelihood(requests[1:2], disable_tqdm=True)
    cut = _direct_loglikelihood(backend.model, whole[-(scored + 2) :], scored)[0]
    assert value == pytest.approx(cut, abs=1e-4)
    assert abs(cut - expected[1][0]) > 1e-3  # the cut is real: less context, another score


def test_every_backend_scores_generates_and_rolls_like_pytorch(tiny_llama_dir, onnx_builds):
    backends = {
        "pytorch": TorchBackend(HfModel(path=str(tiny_llama_dir))),
        "onnxruntime (plain ONNX)": SessionBackend(OnnxModel(path=str(onnx_builds["plain"]))),
        "onnxruntime (GenAI decoder)": SessionBackend(OnnxModel(path=str(onnx_builds["genai"]))),
        "ort-genai": GenAIBackend(OnnxModel(path=str(onnx_builds["genai"]))),
    }
    loglik = _instances("loglikelihood", PAIRS)
    rolling = _instances(
        "loglikelihood_rolling", [("Paris is the capital of France and Rome is the capital of Italy.",)]
    )
    generate = _instances(
        "generate_until",
        [
            ("The quick brown", {"until": ["."], "max_gen_toks": 12}),
            ("Travel light", {"until": ["\n\n"], "max_gen_toks": 6}),
        ],
    )
    results = {}
    for name, backend in backends.items():
        lm = _lm(backend, batch_size=2)
        results[name] = (
            lm.loglikelihood(loglik, disable_tqdm=True),
            lm.loglikelihood_rolling(rolling),
            lm.generate_until(generate),
        )
    torch_scores, torch_rolling, torch_texts = results["pytorch"]
    # Greedy PyTorch generation, cut at the stop string, is what every backend must produce.
    import torch

    model, tokenizer = backends["pytorch"].model, backends["pytorch"].tokenizer
    for (context, kwargs), text in zip([r.args for r in generate], torch_texts, strict=True):
        ids = tokenizer.encode(context, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor([ids]),
                max_new_tokens=kwargs["max_gen_toks"],
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.eos_token_id,
            )
        reference = tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
        assert text == reference.split(kwargs["until"][0])[0]
    # Rolling log-likelihood: every token scored once, the first after the prefix (BOS) token.
    ids = tokenizer.encode(rolling[0].args[0], add_special_tokens=False)
    assert torch_rolling[0] == pytest.approx(
        _direct_loglikelihood(model, [tokenizer.bos_token_id, *ids], len(ids))[0], abs=1e-3
    )
    for name, (scores, rolled, texts) in results.items():
        for (value, greedy), (want, want_greedy) in zip(scores, torch_scores, strict=True):
            assert value == pytest.approx(want, abs=1e-3), name
            assert greedy == want_greedy, name
        assert rolled[0] == pytest.approx(torch_rolling[0], abs=1e-3), name
        assert texts == torch_texts, name


def test_shipped_task_runs_on_each_backend_with_limit(tiny_llama_dir, tiny_lora_dir, onnx_builds):
    metric = {"name": "travel", "type": "lm_eval", "task": TASK, "limit": 12, "batch_size": 4}
    evaluator = EvaluatorConfig.model_validate({"metrics": [metric]})
    scores = {}
    for model in (
        HfModel(path=str(tiny_llama_dir)),
        OnnxModel(path=str(onnx_builds["plain"])),
        OnnxModel(path=str(onnx_builds["genai"])),
    ):
        results = evaluate_model(model, evaluator)
        assert set(results) == {"travel.acc", "travel.acc_norm"}
        assert all(value.higher_is_better for value in results.values())
        scores[model.path] = (results["travel.acc"].value, results["travel.acc_norm"].value)
        # 12 questions: every score is a whole number of them
        assert all(round(value * 12, 6) == round(value * 12) for value in scores[model.path])
    assert len(set(scores.values())) == 1, scores  # fp32 everywhere: the same answers
    # The adapter is applied: a LoRA-ed model scores the choices differently (the log-likelihoods move).
    from olivepress.evaluate.harness_model import BackendLM

    requests = _instances("loglikelihood", PAIRS)
    base = BackendLM(TorchBackend(HfModel(path=str(tiny_llama_dir)))).loglikelihood(
        requests, disable_tqdm=True
    )
    tuned_backend = TorchBackend(HfModel(path=str(tiny_llama_dir), adapter_path=str(tiny_lora_dir)))
    tuned = BackendLM(tuned_backend).loglikelihood(requests, disable_tqdm=True)
    assert max(abs(a[0] - b[0]) for a, b in zip(base, tuned, strict=True)) > 1e-3


def test_shipped_task_data_is_forty_four_choice_questions():
    from olivepress.evaluate.harness import task_manager
    from olivepress.evaluate.lm_tasks import TASKS_DIR
    from olivepress.evaluate.lm_tasks.shipped_data import travel_mc

    rows = list(travel_mc()["test"])
    assert len(rows) == 40
    assert all(len(set(row["choices"])) == 4 and 0 <= row["answer"] < 4 for row in rows)
    assert sorted({row["answer"] for row in rows}) == [
        0,
        1,
        2,
        3,
    ]  # the right answer is not always in one place
    assert TASK in task_manager(TASK, []).all_tasks
    assert (TASKS_DIR / f"{TASK}.yaml").is_file()


def test_olive_lm_evaluator_shape_becomes_metrics(caplog):
    spec = {
        "type": "LMEvaluator",
        "tasks": [TASK, "size_on_disk"],
        "batch_size": 8,
        "limit": 0.5,
        "max_length": 512,
        "model_class": "ortgenai",
        "execution_provider": "CPUExecutionProvider",
        "device": "cpu",
        "goals": {f"{TASK}-acc": {"type": "max-degradation", "value": 0.1}},
    }
    logger = logging.getLogger("olivepress")  # other tests' runs may have set it up not to propagate
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="olivepress"):
            evaluator = EvaluatorConfig.model_validate(lm_evaluator_metrics(spec))
    finally:
        logger.removeHandler(caplog.handler)
    lm, size = evaluator.metrics
    got = (lm.name, lm.type, lm.task, lm.batch_size, lm.limit, lm.max_length, lm.backend)
    # ortgenai is an ORT GenAI folder's own runtime: 'auto', so an HF input model still runs on PyTorch
    assert got == (TASK, "lm_eval", TASK, 8, 0.5, 512, "auto")
    assert size.type == "size_on_disk"
    assert [(s.name, s.goal.type) for s in lm.sub_types] == [("acc", "max-degradation")]
    assert "execution_provider" in caplog.text and "does not apply" in caplog.text
    assert "'device'" not in caplog.text  # the CPU is where it runs
    ort = lm_evaluator_metrics({"type": "LMEvaluator", "tasks": [TASK], "model_class": "ort"})
    assert ort["metrics"][0]["backend"] == "onnxruntime"
    # Olive's '<task>-<score>' and olivepress's '<task>.<score>' name the same result.
    assert evaluator.find(f"{TASK}-acc_norm")[1].name == "acc_norm"
    with pytest.raises(OlivepressError, match="did you mean 'batch_size'"):
        lm_evaluator_metrics({"type": "LMEvaluator", "tasks": [TASK], "batch_sise": 2})
    with pytest.raises(OlivepressError, match="model_class 'onnx' is unknown"):
        lm_evaluator_metrics({"type": "LMEvaluator", "tasks": [TASK], "model_class": "onnx"})
    with pytest.raises(OlivepressError, match="names no task"):
        lm_evaluator_metrics({"type": "LMEvaluator", "tasks": [TASK], "goals": {"hellaswag.acc": {}}})
    with pytest.raises(OlivepressError, match="needs a task"):
        EvaluatorConfig.model_validate({"metrics": [{"name": "x", "type": "lm_eval"}]})


def _workflow(tmp_path: Path, model_path: Path | str, passes: dict, tasks: list[str], **options) -> dict:
    return {
        "input_model": {"type": "HfModel", "model_path": str(model_path)},
        "passes": passes,
        "evaluators": {"lm": {"type": "LMEvaluator", "tasks": tasks, "batch_size": 4, **options}},
        "evaluator": "lm",
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
    }


def test_lm_evaluator_in_a_workflow_run_and_evaluate(tmp_path, tiny_llama_dir):
    goal = {f"{TASK}.acc": {"type": "max-degradation", "value": 0.2}}
    config = _workflow(
        tmp_path,
        tiny_llama_dir,
        {"builder": {"type": "ModelBuilder", "precision": "fp32"}},
        [TASK],
        limit=8,
        goals=goal,
    )
    result = olivepress("run", "--config", write(tmp_path, config))
    assert result.returncode == 0, result.stderr
    footprint = json.loads((tmp_path / "out" / "footprint.json").read_text())
    before = footprint["input_metrics"]
    after = footprint["evaluations"][0]["candidates"][0]["metrics"]
    assert set(before) == set(after) == {f"{TASK}.acc", f"{TASK}.acc_norm"}
    assert before[f"{TASK}.acc"]["value"] == after[f"{TASK}.acc"]["value"]  # fp32 ORT GenAI is the same model
    assert footprint["evaluations"][0]["candidates"][0]["goals"] == {f"{TASK}.acc": True}

    result = olivepress("evaluate", "--config", write(tmp_path, config))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]
    assert metrics[f"{TASK}.acc"]["value"] == before[f"{TASK}.acc"]["value"]
    assert 0 <= metrics[f"{TASK}.acc_norm"]["value"] <= 1


def _inline_task(data_file: Path | str, **more) -> dict:
    """A multiple-choice task defined inline, as Olive's recipes put one in LMEvaluator's tasks."""
    return {
        "task": "inline_capitals",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "answer",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        **more,
    }


def test_an_inline_task_definition_runs_like_a_named_one(tmp_path, tiny_llama_dir):
    rows = [
        {"question": f"Where is city {i}?", "choices": ["north", "south", "east"], "answer": i % 3}
        for i in range(6)
    ]
    data = tmp_path / "capitals.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    spec = {"type": "LMEvaluator", "tasks": [_inline_task(data)], "batch_size": 2}
    evaluator = EvaluatorConfig.model_validate(lm_evaluator_metrics(spec))
    [metric] = evaluator.metrics
    assert (metric.name, metric.task, metric.task_config["dataset_path"]) == (
        "inline_capitals",
        "inline_capitals",
        "json",
    )
    results = evaluate_model(HfModel(path=str(tiny_llama_dir)), evaluator)
    assert set(results) == {"inline_capitals.acc"}
    assert round(results["inline_capitals.acc"].value * 6, 6) == round(
        results["inline_capitals.acc"].value * 6
    )
    with pytest.raises(OlivepressError, match="a task given as a mapping needs its name under 'task'"):
        lm_evaluator_metrics({"type": "LMEvaluator", "tasks": [{"dataset_path": "json"}]})


def test_an_inline_task_without_its_data_names_the_data_set_and_configuration(monkeypatch):
    from olivepress.evaluate.harness import check_task_data

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    task = _inline_task("unused", dataset_path="olivepress-tests/absent", dataset_name="zh-en")
    del task["dataset_kwargs"]
    [metric] = EvaluatorConfig.model_validate(
        lm_evaluator_metrics({"type": "LMEvaluator", "tasks": [task]})
    ).metrics
    with pytest.raises(OlivepressError) as raised:
        check_task_data(metric)
    assert "needs the data set 'olivepress-tests/absent' (configuration 'zh-en')" in str(raised.value)
    assert "datasets.load_dataset('olivepress-tests/absent', 'zh-en')" in str(raised.value)


@pytest.mark.slow  # indexes lm-eval's ~15,000 task YAMLs to find the hub task
def test_a_task_without_its_data_is_one_line_naming_the_data_set(tmp_path, tiny_llama_dir):
    config = _workflow(tmp_path, tiny_llama_dir, {}, ["hellaswag"])
    assert_one_line_error(
        olivepress("evaluate", "--config", write(tmp_path, config)),
        r"lm-eval task 'hellaswag' needs the data set 'Rowan/hellaswag', which is not on this machine",
    )
    evaluator = EvaluatorConfig.model_validate(
        {"metrics": [{"name": "x", "type": "lm_eval", "task": "olivepress_travel"}]}
    )
    with pytest.raises(OlivepressError, match=f"no task 'olivepress_travel'.*did you mean '{TASK}'"):
        evaluate_model(HfModel(path=str(tiny_llama_dir)), evaluator)


@pytest.mark.slow
def test_int4_genai_scores_close_to_fp32_on_the_shipped_task(tmp_path, embedded_model_dir):
    """The embedded SmolLM2 in fp32 PyTorch and its int4 ORT GenAI build, all 40 questions. A
    question flipped changes acc by 0.025; int4 round-to-nearest may flip a few near-ties, so
    the bar is 4 of 40 (0.1) either way. Measured: docs/benchmarks.md."""
    config = _workflow(
        tmp_path,
        "default",
        {"builder": {"type": "ModelBuilder", "precision": "int4"}},
        [TASK],
        goals={f"{TASK}.acc": {"type": "max-degradation", "value": 0.1}},
    )
    result = olivepress("run", "--config", write(tmp_path, config))
    assert result.returncode == 0, result.stderr
    footprint = json.loads((tmp_path / "out" / "footprint.json").read_text())
    fp32 = footprint["input_metrics"][f"{TASK}.acc"]["value"]
    candidate = footprint["evaluations"][0]["candidates"][0]
    int4 = candidate["metrics"][f"{TASK}.acc"]["value"]
    assert fp32 > 0.25 + 0.1  # the model knows more than chance on these questions
    assert abs(int4 - fp32) <= 0.1 + 1e-9
    assert candidate["goals"] == {f"{TASK}.acc": True}
    assert not math.isnan(candidate["metrics"][f"{TASK}.acc_norm"]["value"])

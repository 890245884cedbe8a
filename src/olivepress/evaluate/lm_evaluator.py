"""Olive's `LMEvaluator` shape, rewritten into olivepress metrics.

    "evaluators": {"lm": {"type": "LMEvaluator", "tasks": ["olivepress_travel_mc", "size_on_disk"],
                          "batch_size": 8, "limit": 40, "max_length": 1024, "model_class": "ortgenai"}}

becomes one `lm_eval` metric per task, named after the task, so its results are
'olivepress_travel_mc.acc', 'olivepress_travel_mc.acc_norm' (Olive's 'olivepress_travel_mc-acc'
names the same), and `size_on_disk` in `tasks` is the size_on_disk metric, as in Olive.
Olive gives these results no goals; olivepress adds an optional `goals` mapping
({"olivepress_travel_mc.acc": {"type": "max-degradation", "value": 0.1}}) and `metrics`, a list of
ordinary metrics to measure beside the tasks.
"""

from __future__ import annotations

import logging
from typing import Any

from olivepress.errors import OlivepressError, did_you_mean

log = logging.getLogger("olivepress")

LM_EVALUATOR = "LMEvaluator"

# Olive's LMEvaluator option -> the lm_eval metric's option of the same meaning.
_OPTIONS = {
    "limit": "limit",
    "batch_size": "batch_size",
    "max_length": "max_length",
    "num_fewshot": "num_fewshot",
    "apply_chat_template": "apply_chat_template",
    "system_instruction": "system_instruction",
    "fewshot_as_multiturn": "fewshot_as_multiturn",
    "bootstrap_iters": "bootstrap_iters",
    "include_path": "include_path",
}
# Olive's model_class -> the backend here. 'hf' and 'ortgenai' are what a Hugging Face folder and
# an ORT GenAI folder run on anyway ('auto'), so a recipe that names the runtime of its output
# model still evaluates its Hugging Face input model on PyTorch; 'ort' asks for a plain
# ONNX Runtime session, also on an ORT GenAI folder's decoder.
_MODEL_CLASSES = {"hf": "auto", "ort": "onnxruntime", "ortgenai": "auto"}
# Olive options that olivepress accepts and why they change nothing here.
_NOT_APPLYING = {
    "execution_provider": "ONNX models run on the workflow's execution_provider",
    "provider_options": "ONNX models run with the workflow's execution provider settings",
    "device": "PyTorch models are evaluated on the CPU and ONNX models on the workflow's execution_provider",
    "model_args": "the model runs on olivepress's own backends, not an lm-eval model class",
    "sample_log_num": "per-sample logs are not written; run lm-eval's CLI for them",
    "sample_log_dir": "per-sample logs are not written; run lm-eval's CLI for them",
    "name": "the evaluator's name is its key under evaluators",
}
_OWN = ("type", "tasks", "model_class", "goals", "metrics")


def is_lm_evaluator(spec: Any) -> bool:
    return isinstance(spec, dict) and spec.get("type") == LM_EVALUATOR


def lm_evaluator_metrics(spec: dict[str, Any]) -> dict[str, Any]:
    """An Olive LMEvaluator spec as an olivepress evaluator: {"metrics": [...]}."""
    spec = {**spec.get("type_args", {}), **{k: v for k, v in spec.items() if k != "type_args"}}
    known = (*_OWN, *_OPTIONS, *_NOT_APPLYING)
    for key in spec:
        if key not in known:
            raise OlivepressError(
                f"LMEvaluator has no option '{key}'{did_you_mean(key, known)}; "
                f"known: {', '.join(sorted(known))}"
            )
        if key in _NOT_APPLYING and not (key == "device" and str(spec[key]).lower() == "cpu"):
            log.warning("LMEvaluator: '%s' does not apply here: %s", key, _NOT_APPLYING[key])
    tasks = spec.get("tasks")
    tasks = [tasks] if isinstance(tasks, str) else tasks
    if not tasks or not isinstance(tasks, list):
        raise OlivepressError(
            'LMEvaluator needs tasks: a list of lm-eval task names, e.g. ["olivepress_travel_mc"]'
        )
    options = {_OPTIONS[key]: value for key, value in spec.items() if key in _OPTIONS}
    if spec.get("model_class") is not None:
        options["backend"] = _backend(spec["model_class"])
    metrics: list[dict[str, Any]] = []
    for task in tasks:
        if task == "size_on_disk":
            metrics.append({"name": "size_on_disk", "type": "size_on_disk"})
        elif isinstance(task, dict):  # a task defined inline, as lm-eval's own task list takes it
            name = task.get("task")
            if not isinstance(name, str) or not name:
                raise OlivepressError(
                    "LMEvaluator: a task given as a mapping needs its name under 'task' "
                    '(lm-eval\'s task YAML keys, e.g. {"task": "my_task", "dataset_path": ...})'
                )
            metrics.append({"name": name, "type": "lm_eval", "task": name, "task_config": task, **options})
        else:
            metrics.append({"name": str(task), "type": "lm_eval", "task": str(task), **options})
    _add_goals(metrics, spec.get("goals") or {})
    return {"metrics": metrics + list(spec.get("metrics") or [])}


def _backend(model_class: Any) -> str:
    if model_class not in _MODEL_CLASSES:
        raise OlivepressError(
            f"LMEvaluator model_class '{model_class}' is unknown"
            f"{did_you_mean(str(model_class), _MODEL_CLASSES)}; "
            f"use one of {', '.join(_MODEL_CLASSES)} (or leave it out: the model's own runtime)"
        )
    return _MODEL_CLASSES[model_class]


def _add_goals(metrics: list[dict[str, Any]], goals: Any) -> None:
    """{"<task>.<score>" (or Olive's "<task>-<score>"): goal} -> that task metric's sub_types."""
    if not isinstance(goals, dict):
        raise OlivepressError(
            'LMEvaluator goals must map \'<task>.<score>\' to a goal, e.g. {"type": "threshold", ...}'
        )
    by_task = {metric["name"]: metric for metric in metrics if metric["type"] == "lm_eval"}
    for ref, goal in goals.items():
        task, score = _split(ref, by_task)
        by_task[task].setdefault("sub_types", []).append({"name": score, "goal": goal})


def _split(ref: str, by_task: dict[str, dict[str, Any]]) -> tuple[str, str]:
    for sep in (".", "-"):
        task, _, score = ref.rpartition(sep)
        if task in by_task and score:
            return task, score
    raise OlivepressError(
        f"LMEvaluator goal '{ref}' names no task of the evaluator; write '<task>.<score>' "
        f"with a task from tasks ({', '.join(by_task) or 'none'})"
    )

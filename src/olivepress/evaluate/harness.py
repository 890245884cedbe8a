"""An lm_eval metric: one lm-evaluation-harness task run on an olivepress backend.

Tasks are found by lm-eval's TaskManager over the shipped task folder (evaluate/lm_tasks/),
the metric's include_path, and, only when the task is not there, lm-eval's own task list
(indexing it takes seconds, so a shipped task never pays for it). A task whose data set is not
on the machine stops with one line that names the data set.

The result is every score the task reports, by name: 'acc', 'acc_norm', 'exact_match', ...; a
score under a filter other than lm-eval's 'none' is '<score>_<filter>' ('exact_match_strict_match').
Standard errors are left out.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from olivepress.errors import OlivepressError, did_you_mean
from olivepress.evaluate.backends import Backend
from olivepress.evaluate.config import MetricConfig

log = logging.getLogger("olivepress")

SHIPPED_EXAMPLE = "olivepress_travel_mc"
_NOT_A_WORD = re.compile(r"\W+")


def run_task(open_backend: Callable[[], Backend], metric: MetricConfig) -> dict[str, float]:
    """The scores of `metric.task` for the model `open_backend()` loads. The task and its data
    load first, so a task that cannot run stops before the model loads."""
    _require_lm_eval(metric)
    from lm_eval import simple_evaluate

    from olivepress.evaluate.harness_model import BackendLM

    assert metric.task is not None
    manager = _manager_for(metric)
    tasks = _load_task(manager, metric.task, metric.task_config)
    backend = open_backend()
    if not backend.is_llm:
        raise OlivepressError(f"lm_eval metric '{metric.name}' needs a causal language model, not this one")
    model = BackendLM(backend, batch_size=metric.batch_size, max_length=metric.max_length)
    limit = metric.limit if metric.limit is None or metric.limit < 1 else int(metric.limit)
    with _quiet_harness(f"lm-eval: {metric.task} on {backend.name}"):
        results = simple_evaluate(
            model=model,
            tasks=tasks,
            task_manager=manager,
            limit=limit,
            num_fewshot=metric.num_fewshot,
            bootstrap_iters=metric.bootstrap_iters,
            log_samples=False,
            apply_chat_template=metric.apply_chat_template,
            system_instruction=metric.system_instruction,
            fewshot_as_multiturn=metric.fewshot_as_multiturn,
        )
    return task_scores(results, metric.task)


def check_task_data(metric: MetricConfig) -> None:
    """Load `metric.task` with its data now, so a task that cannot run stops a workflow before
    its passes rather than after them; the same one line the evaluation would print."""
    _require_lm_eval(metric)
    assert metric.task is not None
    _load_task(_manager_for(metric), metric.task, metric.task_config)


def _require_lm_eval(metric: MetricConfig) -> None:
    if importlib.util.find_spec("lm_eval") is None:
        raise OlivepressError(
            f"lm_eval metric '{metric.name}' needs the lm-eval package; "
            "install it: pip install 'olivepress[lm-eval]'"
        )


def _manager_for(metric: MetricConfig):
    if metric.task_config is not None:  # defined inline: the shipped and included folders will do
        from olivepress.evaluate.lm_tasks import TASKS_DIR

        return _manager((str(TASKS_DIR), *_folders(metric.include_path)), False)
    assert metric.task is not None
    return task_manager(metric.task, metric.include_path)


def _load_task(manager, task: str, inline: dict[str, Any] | None = None) -> list[Any]:
    """The task (or group) with its data read; a data set that is not here is one line. `inline`:
    the task's definition given in the config rather than by a YAML lm-eval knows."""
    with _quiet_harness(f"lm-eval: loading {task}"):
        try:
            loaded = manager.load([inline if inline is not None else task])
        except Exception as exc:
            if _is_missing_data(exc):
                raise OlivepressError(_missing_data_message(task, exc, manager, inline)) from exc
            raise
    if task in loaded["groups"]:
        return [loaded["groups"][task]]
    if task in loaded["tasks"]:
        return [loaded["tasks"][task]]
    return list(loaded["tasks"].values())  # a tag: the tasks it names


def task_manager(task: str, include_path: list[str]):
    """A TaskManager that knows `task`: the shipped and included folders, else lm-eval's own list."""
    from olivepress.evaluate.lm_tasks import TASKS_DIR

    paths = (str(TASKS_DIR), *_folders(include_path))
    local = _manager(paths, False)
    if task in local.all_tasks:
        return local
    everything = _manager(paths, True)
    if task in everything.all_tasks:
        return everything
    raise OlivepressError(
        f"lm-eval has no task '{task}'{did_you_mean(task, everything.all_tasks)}; "
        f"name one of its tasks or a shipped one ({', '.join(local.all_tasks)})"
    )


def _folders(include_path: list[str]) -> list[str]:
    for folder in include_path:
        if not Path(folder).expanduser().is_dir():
            raise OlivepressError(
                f"include_path {folder} is not a folder; give folders that hold task YAML files"
            )
    return [str(Path(folder).expanduser()) for folder in include_path]


@functools.lru_cache(maxsize=4)
def _manager(paths: tuple[str, ...], with_defaults: bool):
    from lm_eval.tasks import TaskManager

    with _quiet_harness():
        return TaskManager(include_path=list(paths), include_defaults=with_defaults)


def task_scores(results: dict[str, Any], task: str) -> dict[str, float]:
    """{score name: value} of `task` (a task or a group) from simple_evaluate's results."""
    row = results.get("results", {}).get(task) or results.get("groups", {}).get(task)
    if not row:
        raise OlivepressError(f"lm-eval reported nothing for task '{task}'; check that the task has examples")
    scores: dict[str, float] = {}
    for key, value in row.items():
        # Scores are 'metric,filter'; 'alias' and 'sample_len' beside them are not scores.
        metric, comma, data_filter = key.partition(",")
        if (
            not comma
            or metric.endswith("_stderr")
            or isinstance(value, bool)
            or not isinstance(value, int | float)
        ):
            continue
        name = metric if data_filter in ("", "none") else metric + "_" + _NOT_A_WORD.sub("_", data_filter)
        scores[name] = float(value)
    return scores


def _is_missing_data(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says a data set could not be fetched or found."""
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    missing = (
        ConnectionError,
        DatasetNotFoundError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        FileNotFoundError,
    )
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, missing):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _missing_data_message(task: str, exc: BaseException, manager, inline: dict[str, Any] | None) -> str:
    path, subset = _dataset_in(inline) if inline is not None else (None, None)
    named = _dataset_named(exc)
    if named and named != path:  # what the error names is what could not be had
        path, subset = named, None
    if path is None:
        path, subset = _dataset_of(task, manager)
    offline = any(
        os.environ.get(flag, "") not in ("", "0") for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    why = "offline mode is on" if offline else "the Hugging Face Hub cannot be reached"
    if path is None:
        shown, call = "its data set", "..."
    elif subset:
        shown, call = f"'{path}' (configuration '{subset}')", f"'{path}', '{subset}'"
    else:
        shown, call = f"'{path}'", f"'{path}'"
    return (
        f"lm-eval task '{task}' needs the data set {shown}, which is not on this machine ({why}); "
        f"download it once while online (datasets.load_dataset({call})) or run a local task "
        f"such as {SHIPPED_EXAMPLE}"
    )


def _dataset_named(exc: BaseException) -> str | None:
    match = re.search(r"(?:reach|[Dd]ataset) '([^']+)'", str(exc))
    return match.group(1) if match else None


def _dataset_of(task: str, manager) -> tuple[str | None, str | None]:
    """The dataset_path and dataset_name in the task's YAML."""
    try:
        from lm_eval.utils import load_yaml_config
    except ImportError:  # lm-eval versions move it; the message then says "its data set"
        return None, None
    entry = manager.task_index.get(task)
    if entry is None or not getattr(entry, "yaml_path", None):
        return None, None
    try:
        config = load_yaml_config(str(entry.yaml_path), mode="simple")
    except Exception:  # a YAML we cannot read names no data set; the message says "its data set"
        return None, None
    return _dataset_in(config)


def _dataset_in(config: dict[str, Any]) -> tuple[str | None, str | None]:
    return config.get("dataset_path"), config.get("dataset_name")


@contextlib.contextmanager
def _quiet_harness(status: str | None = None) -> Iterator[None]:
    """lm-eval's notes, progress bars and the `git describe` it runs for its report go to a log
    file (the user sees `status` with a spinner), unless olivepress logs at DEBUG."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    from olivepress.capture import output_to_file

    harness = logging.getLogger("lm_eval")
    level = harness.level
    harness.setLevel(logging.ERROR)
    try:
        with output_to_file(Path(tempfile.gettempdir()) / "olivepress-lm-eval.log", status=status):
            yield
    finally:
        harness.setLevel(level)

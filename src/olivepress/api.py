"""olivepress as Python functions: the same operations as the CLI commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from olivepress.engine.runner import WorkflowResult
from olivepress.models.handles import ModelHandle
from olivepress.workflow.config import WorkflowConfig


def run(
    config: str | Path | dict[str, Any] | WorkflowConfig,
    *,
    clean_cache: bool = False,
    log_level: int | None = None,
    overrides: dict[str, Any] | None = None,
    summary: bool = True,
    check: Callable[[ModelHandle], dict[str, Any]] | None = None,
    allow_user_code: bool = False,
) -> WorkflowResult:
    """Run a workflow (a config file, a dict in the seed's nested or the flat shape, or a
    WorkflowConfig) and return its result; the output is written to its output_dir.

    Python the config names (user_script, custom metrics) runs only with `allow_user_code`."""
    from olivepress.engine.runner import run_workflow
    from olivepress.engine.summary import print_summary
    from olivepress.ui import setup_logging
    from olivepress.workflow.load import load_workflow

    workflow = load_workflow(config, overrides, allow_user_code=allow_user_code)
    setup_logging(workflow.config.log_severity_level if log_level is None else log_level)
    result = run_workflow(workflow, clean_cache=clean_cache, check=check)
    if summary:
        print_summary(result)
    return result


def finetune(
    model_name_or_path: str | None = "default",
    *,
    data_files: str | list[str],
    output_path: str | Path,
    method: str = "lora",
    data_name: str = "json",
    split: str = "train",
    text_template: str | None = None,
    text_field: str | None = None,
    use_chat_template: bool = False,
    max_seq_len: int | None = None,
    max_samples: int | None = None,
    corpus_strategy: str = "line-by-line",
    eval_split: float | int | str | None = None,
    training_args: dict[str, Any] | None = None,
    pass_options: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | Path = ".olivepress-cache",
    clean_cache: bool = False,
    log_level: int = 1,
    summary: bool = True,
) -> WorkflowResult:
    """Train an adapter (`method`: lora, qlora, dora, loha, lokr) on a model, as `olivepress finetune`.

    The output folder gets `model/` (the base the adapter was trained on: for an AWQ/GPTQ
    model, that quantized checkpoint) and `adapter/` (a PEFT adapter, with
    `training_log.jsonl`). `eval_split` holds data out for eval loss: a fraction (0.1), a
    count (20), or a split of the data files ("train[90%:]"). `pass_options` are the pass's
    other options (lora_r, lora_alpha, lora_dropout, target_modules, double_quant, ...),
    `training_args` Hugging Face TrainingArguments names. The data is checked (loaded and
    rendered) before any model is loaded, so a bad file or template fails at once.
    """
    import logging

    from olivepress.data import data_config_from_flags, load_records, render_texts
    from olivepress.errors import OlivepressError, did_you_mean
    from olivepress.models.handles import HfModel
    from olivepress.models.loading import load_tokenizer
    from olivepress.models.resolve import resolve_model
    from olivepress.passes.torch.lora import METHODS
    from olivepress.ui import setup_logging
    from olivepress.workflow.load import load_workflow

    setup_logging(log_level)
    pass_type = METHODS.get(method.lower())
    if pass_type is None:
        raise OlivepressError(
            f"unknown finetune method '{method}'{did_you_mean(method, METHODS)}; "
            f"choose one of {', '.join(METHODS)}"
        )
    files = [data_files] if isinstance(data_files, str) else list(data_files)
    files = [str(Path(f).expanduser().resolve()) if not set("*?[") & set(f) else f for f in ",".join(files).split(",") if f.strip()]
    data_flags = {
        "data_files": files, "data_name": data_name, "text_template": text_template, "text_field": text_field,
        "use_chat_template": use_chat_template, "max_seq_len": max_seq_len, "max_samples": max_samples,
        "corpus_strategy": corpus_strategy,
    }
    train_data = data_config_from_flags(split=split, name="train", **data_flags)
    options: dict[str, Any] = {"type": pass_type, "train_data_config": train_data.model_dump(exclude_unset=True)}
    eval_data = None
    if isinstance(eval_split, str) and not _is_number(eval_split):  # a split of the data files, e.g. "train[90%:]"
        eval_data = data_config_from_flags(split=eval_split, name="eval", **data_flags)
        options["eval_data_config"] = eval_data.model_dump(exclude_unset=True)
    elif eval_split is not None:
        options["eval_dataset_size"] = _number(eval_split)
    options.update(pass_options or {})
    if training_args:
        options["training_args"] = dict(training_args)

    model = resolve_model(model_name_or_path, load_kwargs={"trust_remote_code": True} if trust_remote_code else {})
    if not isinstance(model, HfModel):
        raise OlivepressError(f"{model.path} is an ONNX model; finetune trains adapters on a Hugging Face / PyTorch model")
    config = {
        "input_model": {"type": "HfModel", "model_path": model.path, "load_kwargs": model.load_kwargs},
        "passes": {method.lower(): options},
        "output_dir": str(output_path),
        "cache_dir": str(cache_dir),
        "log_severity_level": log_level,
    }
    workflow = load_workflow(config)  # every option checked before the data is read

    # The data, in full, before the model: a missing file, bad JSON or a template field the
    # records lack fails here in a second, not after the model has loaded.
    tokenizer = load_tokenizer(model) if use_chat_template else None
    texts = render_texts(load_records(train_data), train_data.pre_process_data_config, tokenizer)
    if eval_data is not None:
        render_texts(load_records(eval_data), eval_data.pre_process_data_config, tokenizer)
    logging.getLogger("olivepress").info("%d training texts; the first: %r", len(texts), _clip(texts[0]))
    return run(workflow.config, clean_cache=clean_cache, log_level=log_level, summary=summary)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(value: float | int | str) -> float | int:
    if isinstance(value, int | float):
        return value
    number = float(value)
    return int(number) if number.is_integer() and "." not in value else number


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

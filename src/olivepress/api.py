"""olivepress as Python functions: each CLI command is its flags parsed, then one call here.

    from olivepress import api
    api.quantize("default", algorithm="awq", output_path="out/awq")
    api.finetune("out/awq/model", data_files=["travel.jsonl"], text_template="{prompt} {response}",
                 training_args={"max_steps": 100}, output_path="out/ft")
    api.auto_opt("out/ft/model", adapter_path="out/ft/adapter", output_path="out/onnx")

The functions take Python values (lists, numbers, DataConfig); parsing what a command line
typed (comma lists, "0.1" vs "train[90%:]") is the CLI's job. Those that make a model
(quantize, finetune, auto_opt) build a workflow config and run it through the engine (`run`),
so their passes are cached and their output written whole; the others measure (evaluate,
benchmark), convert (convert_adapters) or share (package, register, pull) what those wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olivepress.engine.runner import WorkflowResult
from olivepress.models.handles import ModelHandle
from olivepress.workflow.config import WorkflowConfig

if TYPE_CHECKING:
    from olivepress.data.config import DataConfig
    from olivepress.evaluate.config import EvaluatorConfig
    from olivepress.evaluate.results import Evaluation
    from olivepress.share.registry import RegisteredVersion

CACHE_DIR = ".olivepress-cache"


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


def quantize(
    model_name_or_path: str | Path = "default",
    *,
    output_path: str | Path,
    algorithm: str = "awq",
    precision: str = "int4",
    group_size: int = 128,
    sym: bool = False,
    num_calib_samples: int | None = None,
    calib_seq_len: int | None = None,
    seed: int = 0,
    include_lm_head: bool = False,
    modules_to_not_convert: list[str] | None = None,
    calibration_data: DataConfig | dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | Path = CACHE_DIR,
    clean_cache: bool = False,
    log_level: int = 1,
    summary: bool = True,
) -> WorkflowResult:
    """Quantize a model's weights (`algorithm`: awq, gptq, rtn; int4 or int8) into an AutoAWQ /
    GPTQ checkpoint in OUTPUT/model, as `olivepress quantize`. `calibration_data` is the data
    the algorithm calibrates on (default: text olivepress ships)."""
    from olivepress.data.config import DataConfig
    from olivepress.errors import OlivepressError, did_you_mean
    from olivepress.passes.registry import command_passes

    algorithms = command_passes("quantize")
    pass_type = algorithms.get(algorithm.lower())
    if pass_type is None:
        raise OlivepressError(
            f"unknown algorithm '{algorithm}'{did_you_mean(algorithm, algorithms)}; choose awq, gptq or rtn"
        )
    bits = {"int4": 4, "int8": 8}.get(precision.lower())
    if bits is None:
        raise OlivepressError(
            f"--precision {precision} is not a weight-only precision this command writes; use int4 or int8"
        )
    options: dict[str, Any] = {
        "type": pass_type,
        "bits": bits,
        "group_size": group_size,
        "seed": seed,
        "include_lm_head": include_lm_head,
    }
    if sym:
        options["sym"] = True
    if num_calib_samples is not None:
        options["num_calib_samples"] = num_calib_samples
    if calib_seq_len is not None:
        options["calib_seq_len"] = calib_seq_len
    if modules_to_not_convert:
        options["modules_to_not_convert"] = list(modules_to_not_convert)
    data = calibration_data
    if isinstance(data, dict):
        data = DataConfig.model_validate(data)
    if data is not None:
        options["data_config"] = data.name
    config = {
        "input_model": {
            "type": "HfModel",
            "model_path": str(model_name_or_path),
            "load_kwargs": {"trust_remote_code": True} if trust_remote_code else {},
        },
        "data_configs": [data.model_dump()] if data else [],
        "passes": {"quantize": options},
        "output_dir": str(output_path),
        "cache_dir": str(cache_dir),
    }
    return run(config, clean_cache=clean_cache, log_level=log_level, summary=summary)


def finetune(
    model_name_or_path: str | Path | None = "default",
    *,
    data_files: str | Path | list[str | Path],
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
    cache_dir: str | Path = CACHE_DIR,
    clean_cache: bool = False,
    log_level: int = 1,
    summary: bool = True,
) -> WorkflowResult:
    """Train an adapter (`method`: lora, qlora, dora, loha, lokr) on a model, as `olivepress finetune`.

    The output folder gets `model/` (the base the adapter was trained on: for an AWQ/GPTQ
    model, that quantized checkpoint) and `adapter/` (a PEFT adapter, with
    `training_log.jsonl`). `data_files` is a file, a glob, or a list of them. `eval_split` holds
    data out for eval loss: a fraction (0.1), a count (20), or a split of the data files
    ("train[90%:]"). `pass_options` are the pass's
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
    from olivepress.passes.registry import command_passes
    from olivepress.ui import setup_logging
    from olivepress.workflow.load import load_workflow

    setup_logging(log_level)
    methods = command_passes("finetune")
    pass_type = methods.get(method.lower())
    if pass_type is None:
        raise OlivepressError(
            f"unknown finetune method '{method}'{did_you_mean(method, methods)}; "
            f"choose one of {', '.join(methods)}"
        )
    # Whole paths, so the cached pass names the same files wherever it is run from; globs as given.
    files = [
        name if set("*?[") & set(name) else str(Path(name).expanduser().resolve())
        for name in map(str, data_files if isinstance(data_files, list) else [data_files])
    ]
    data_flags = {
        "data_files": files,
        "data_name": data_name,
        "text_template": text_template,
        "text_field": text_field,
        "use_chat_template": use_chat_template,
        "max_seq_len": max_seq_len,
        "max_samples": max_samples,
        "corpus_strategy": corpus_strategy,
    }
    train_data = data_config_from_flags(split=split, name="train", **data_flags)
    options: dict[str, Any] = {
        "type": pass_type,
        "train_data_config": train_data.model_dump(exclude_unset=True),
    }
    eval_data = None
    if isinstance(eval_split, str):  # a split of the data files, e.g. "train[90%:]"
        eval_data = data_config_from_flags(split=eval_split, name="eval", **data_flags)
        options["eval_data_config"] = eval_data.model_dump(exclude_unset=True)
    elif eval_split is not None:
        options["eval_dataset_size"] = eval_split
    options.update(pass_options or {})
    if training_args:
        options["training_args"] = dict(training_args)

    load_kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    name = None if model_name_or_path is None else str(model_name_or_path)
    model = resolve_model(name, load_kwargs=load_kwargs)
    if not isinstance(model, HfModel):
        raise OlivepressError(
            f"{model.path} is an ONNX model; finetune trains adapters on a Hugging Face / PyTorch model"
        )
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


def auto_opt(
    model_name_or_path: str | Path = "default",
    *,
    output_path: str | Path,
    adapter_path: str | Path | None = None,
    adapter_name: str = "default",
    adapter_precision: str = "fp32",
    adapter_block_size: int | None = None,
    device: str | None = None,
    provider: str | None = None,
    precision: str = "int4",
    use_ort_genai: bool = False,
    int4_block_size: int | None = None,
    int4_accuracy_level: int | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | Path = CACHE_DIR,
    skip_check: bool = False,
    clean_cache: bool = False,
    log_level: int = 1,
    summary: bool = True,
) -> WorkflowResult:
    """Optimise a model into ONNX for a device and execution provider, as `olivepress auto-opt`.

    A decoder the ORT GenAI builder knows becomes an ORT GenAI folder in OUTPUT/model (with
    `adapter_path` as a switchable `adapter_weights.onnx_adapter` named `adapter_name`, its LoRA
    matrices stored at `adapter_precision`: fp32, fp16, int8 or int4); other
    models take the generic ONNX path. The result is compared with PyTorch before it is handed
    over unless `skip_check` or the provider is not in this onnxruntime build; the comparison
    is in the footprint (`result.footprint.checks`).
    """
    from olivepress.ui import console, setup_logging
    from olivepress.workflow.auto_opt import plan_auto_opt

    setup_logging(log_level)
    plan = plan_auto_opt(
        model_name_or_path,
        output_path=output_path,
        adapter_path=adapter_path,
        adapter_name=adapter_name,
        adapter_precision=adapter_precision,
        adapter_block_size=adapter_block_size,
        device=device,
        provider=provider,
        precision=precision,
        use_ort_genai=use_ort_genai,
        int4_block_size=int4_block_size,
        int4_accuracy_level=int4_accuracy_level,
        trust_remote_code=trust_remote_code,
        cache_dir=cache_dir,
        skip_check=skip_check,
    )
    for message in plan.messages:
        console.print(message)
    result = run(plan.config, clean_cache=clean_cache, log_level=log_level, check=plan.check, summary=summary)
    report = result.footprint.checks.get(str(result.flows[0].output_dir))
    if report and summary:
        console.print("Check against PyTorch:")
        for line in report["lines"]:
            console.print(f"  {line}")
    return result


def convert_adapters(
    adapter_path: str | Path,
    model: str | Path,
    output_path: str | Path,
    name: str | None = None,
    *,
    adapter_precision: str | None = None,
    symmetric: bool = True,
) -> Path:
    """A PEFT LoRA adapter into an `.onnx_adapter` file for an auto-opt model (its output
    folder or model/ folder), as `olivepress convert-adapters`; with `name`, also registered
    in the model's adapters.json. The file stores the LoRA matrices at the precision the model
    was built for (`adapter_precision`, if given, must be that one; `symmetric` picks the
    int8/int4 zero point). Returns the file written."""
    from olivepress.errors import OlivepressError
    from olivepress.paths import atomic_file
    from olivepress.runtime.adapters import convert_peft_adapter, register_adapter
    from olivepress.runtime.generate import GenAIModel, genai_folder

    output = Path(output_path)
    if output.suffix != ".onnx_adapter":
        raise OlivepressError(f"output path {output} should end in .onnx_adapter")
    adapter_dir = Path(adapter_path)
    if not adapter_dir.exists():
        raise OlivepressError(f"adapter path {adapter_dir} does not exist; pass a PEFT adapter folder")
    model_dir = genai_folder(model)
    with atomic_file(output) as tmp:
        convert_peft_adapter(adapter_dir, model_dir, tmp, precision=adapter_precision, symmetric=symmetric)
        # Loading it into the model is the proof it fits; a file that does not load is not handed over.
        GenAIModel(model_dir, adapters={"candidate": tmp})
    if name:
        register_adapter(model_dir, name, str(output.resolve()))
    return output


def evaluate(
    config: str | Path | dict[str, Any] | WorkflowConfig,
    *,
    output_path: str | Path | None = None,
    allow_user_code: bool = False,
    log_level: int = 1,
    summary: bool = True,
) -> Evaluation:
    """Measure a workflow's input model with the workflow's evaluator, running no pass, as
    `olivepress evaluate`. Relative goals compare a model with the input model, which this is,
    so only threshold goals are checked. The results are written to `output_path` (default
    <output_dir>/metrics.json)."""
    from olivepress.engine.runner import input_handle
    from olivepress.engine.search import check_goals, describe_goals, goal_specs
    from olivepress.errors import OlivepressError
    from olivepress.evaluate.evaluator import evaluate_model
    from olivepress.evaluate.results import Evaluation, print_metrics, write_json
    from olivepress.ui import console, setup_logging
    from olivepress.workflow.load import load_workflow

    source = Path(config) if isinstance(config, str) else config
    workflow = load_workflow(source, allow_user_code=allow_user_code)
    setup_logging(log_level)
    if workflow.evaluator is None:
        where = config if isinstance(config, str | Path) else "the workflow"
        raise OlivepressError(
            f'{where} has no evaluator; add "evaluator" (or engine.evaluator) naming one under evaluators'
        )
    model = input_handle(workflow)
    data_configs = {data.name: data for data in workflow.config.data_configs}
    results = evaluate_model(
        model, workflow.evaluator, data_configs=data_configs, execution_provider=workflow.execution_provider
    )
    goals = [g for g in goal_specs(workflow.evaluator) if g.goal.type == "threshold"]
    met = check_goals(results, goals, results)
    described = describe_goals(goals, results)
    text = {name: f"{described[name]}: {'met' if ok else 'MISSED'}" for name, ok in met.items()}
    if summary:
        print_metrics(f"olivepress evaluate: {model.path}", results, text)
    output = Path(output_path or Path(workflow.config.output_dir).expanduser() / "metrics.json")
    write_json(
        output,
        {
            "model": model.model_dump(),
            "metrics": {name: value.to_dict() for name, value in results.items()},
            "goals": text,
        },
    )
    if summary:
        console.print(f"Results: {output}")
    return Evaluation(model=model, metrics=results, goals=text, met=met, output_path=output)


def benchmark(
    model_name_or_path: str | Path = "default",
    *,
    evaluator: EvaluatorConfig | dict[str, Any],
    provider: str = "CPUExecutionProvider",
    output_path: str | Path = "benchmark.json",
    trust_remote_code: bool = False,
    settings: dict[str, Any] | None = None,
    log_level: int = 1,
    summary: bool = True,
) -> Evaluation:
    """Measure a model folder (HF, ONNX or ORT GenAI) with `evaluator` (an evaluator config:
    {"metrics": [...]}), as `olivepress benchmark`; the results, with `settings` (what the run
    was asked for, recorded as given), are written to `output_path`."""
    from olivepress.evaluate.config import EvaluatorConfig
    from olivepress.evaluate.evaluator import evaluate_model
    from olivepress.evaluate.results import Evaluation, print_metrics, write_json
    from olivepress.models.resolve import resolve_model
    from olivepress.ui import console, setup_logging

    setup_logging(log_level)
    if isinstance(evaluator, dict):
        evaluator = EvaluatorConfig.model_validate(evaluator)
    load_kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    model = resolve_model(str(model_name_or_path), load_kwargs=load_kwargs)
    results = evaluate_model(model, evaluator, execution_provider=provider)
    if summary:
        print_metrics(f"olivepress benchmark: {model.path}", results)
    write_json(
        output_path,
        {
            "model": model.model_dump(),
            "settings": settings or {},
            "metrics": {name: value.to_dict() for name, value in results.items()},
        },
    )
    if summary:
        console.print(f"Results: {output_path}")
    return Evaluation(model=model, metrics=results, output_path=Path(output_path))


def package(
    folder: str | Path,
    output_path: str | Path | None = None,
    *,
    name: str | None = None,
    version: str = "1",
    adapters: dict[str, str | Path] | None = None,
) -> Path:
    """Pack an output folder (with `adapters`: name -> .onnx_adapter file) into a versioned
    archive with a manifest, as `olivepress package`; returns the archive's path."""
    from olivepress.share.package import build_package

    return build_package(folder, output_path, name=name, version=version, adapters=adapters)


def register(
    path: str | Path,
    name: str,
    version: str | int | None = None,
    *,
    registry_uri: str | None = None,
    description: str | None = None,
) -> RegisteredVersion:
    """Register an output folder or package archive in MLflow as the next version of `name`,
    as `olivepress register`."""
    from olivepress.share.registry import register as register_in_mlflow

    return register_in_mlflow(path, name, version, uri=registry_uri, description=description)


def pull(model: str, output_path: str | Path, *, registry_uri: str | None = None) -> Path:
    """Download `models:/NAME/VERSION` and unpack it into `output_path`, as `olivepress pull`."""
    from olivepress.share.registry import pull as pull_from_mlflow

    return pull_from_mlflow(model, output_path, uri=registry_uri)


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

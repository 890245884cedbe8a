"""The seed configs' nested shape, rewritten into the flat shape of workflow/config.py.

Nested (seed 001):  {"type": "LoRA", "config": {...}},  input_model.config.hf_config,
load_dataset_config.params, pre_process_data_config.params, params_config.component_kwargs,
engine: {...}.   Flat: options beside `type`, engine keys at top level.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from olivepress.errors import OlivepressError
from olivepress.evaluate.config import EvaluatorConfig
from olivepress.evaluate.lm_evaluator import is_lm_evaluator, lm_evaluator_metrics
from olivepress.workflow.config import SUPPORTED_SYSTEMS
from olivepress.workflow.errors import explain
from olivepress.workflow.olive_compat import apply_key_treatments
from olivepress.workflow.search_config import SearchStrategyConfig

MODEL_TYPE_ALIASES = {"PyTorchModel": "HfModel", "HuggingFaceModel": "HfModel", "ONNXModel": "OnnxModel"}

_AZURE_HINT = "olivepress reads local folders, .gguf files and models in the local Hugging Face cache"


def normalize_workflow(raw: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise OlivepressError(
            f"a workflow config must be a mapping of keys to values, not {type(raw).__name__}"
        )
    flat = {key: value for key, value in raw.items() if key != "engine"}
    engine = raw.get("engine")
    if engine is not None:
        if not isinstance(engine, dict):
            raise OlivepressError("'engine' must be a mapping of engine options (cache_dir, output_dir, ...)")
        for key, value in engine.items():
            if key in flat and flat[key] != value:
                raise OlivepressError(
                    f"'{key}' is set both at the top level and in 'engine' with different values; keep one"
                )
            flat[key] = value
    # Olive keys that do not apply here are dropped with a warning; refused ones stop here.
    flat = apply_key_treatments("run+engine", flat, "")
    if "input_model" in flat:
        flat["input_model"] = _input_model(flat["input_model"])
    if isinstance(flat.get("systems"), dict):
        flat["systems"] = {name: _system(name, system) for name, system in flat["systems"].items()}
    if isinstance(flat.get("passes"), dict):
        flat["passes"] = {name: _pass(name, spec) for name, spec in flat["passes"].items()}
    if isinstance(flat.get("data_configs"), list):
        flat["data_configs"] = [_data_config(item) for item in flat["data_configs"]]
    if isinstance(flat.get("evaluators"), dict):
        flat["evaluators"] = {name: _evaluator(spec) for name, spec in flat["evaluators"].items()}
    if isinstance(flat.get("evaluator"), dict):
        flat["evaluator"] = _checked(EvaluatorConfig, _evaluator(flat["evaluator"]), "evaluator")
    if "search_strategy" in flat:
        flat["search_strategy"] = _search_strategy(flat["search_strategy"])
        if isinstance(flat["search_strategy"], dict):
            flat["search_strategy"] = _checked(
                SearchStrategyConfig, flat["search_strategy"], "search_strategy"
            )
    return flat


def _checked(model: type[BaseModel], value: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate a section whose field is a union (false | {...}, a name | {...}) on its own, so an
    error names the mistake in the mapping rather than the union's first member."""
    try:
        model.model_validate(value)
    except ValidationError as exc:
        raise explain(exc, model, where=where) from None
    return value


# Olive's names for metric options -> olivepress's.
_METRIC_KEYS = {
    "warmup_num": "warmup_runs",
    "repeat_test_num": "timed_runs",
    "evaluate_func_kwargs": "func_kwargs",
    "metric_func": "evaluate_func",
}


def _evaluator(spec: Any) -> Any:
    spec = _unwrap_config(spec)
    if is_lm_evaluator(spec):  # Olive's lm-eval evaluator: one lm_eval metric per task
        spec = lm_evaluator_metrics(spec)
    if not isinstance(spec, dict) or not isinstance(spec.get("metrics"), list):
        return spec
    return {**spec, "metrics": [_metric(metric) for metric in spec["metrics"]]}


def _metric(spec: Any) -> Any:
    """Olive's metric: options in user_config / metric_config beside name and type; flattened."""
    if not isinstance(spec, dict):
        return spec
    flat = {key: value for key, value in spec.items() if key not in ("user_config", "metric_config")}
    for section in ("user_config", "metric_config"):
        inner = spec.get(section)
        if isinstance(inner, dict):
            for key, value in inner.items():
                key = _METRIC_KEYS.get(key, key)
                if key in flat and flat[key] != value:
                    raise OlivepressError(
                        f"metric '{spec.get('name')}': '{key}' is given twice with different values; keep one"
                    )
                flat[key] = value
    return {_METRIC_KEYS.get(key, key): value for key, value in flat.items()}


_SAMPLER_ALIASES = {"exhaustive": "sequential", "grid": "sequential", "optuna": "tpe"}


def _search_strategy(spec: Any) -> Any:
    """true -> defaults.

    The older search_algorithm / search_algorithm_config spelling -> sampler / max_samples.
    """
    if spec is True:
        return {}
    if not isinstance(spec, dict):
        return spec
    spec = dict(spec)
    if "search_algorithm" in spec:
        if "sampler" in spec:
            raise OlivepressError("search_strategy gives both search_algorithm and sampler; keep sampler")
        spec["sampler"] = spec.pop("search_algorithm")
    config = spec.pop("search_algorithm_config", None)
    if isinstance(config, dict):
        config = dict(config)
        for old, new in (("num_samples", "max_samples"), ("max_samples", "max_samples"), ("seed", "seed")):
            if old in config:
                spec.setdefault(new, config.pop(old))
        if config:
            raise OlivepressError(
                "unknown key(s) in search_strategy.search_algorithm_config: "
                f"{', '.join(sorted(config))}; known: num_samples, seed"
            )
    if isinstance(spec.get("sampler"), str):
        spec["sampler"] = _SAMPLER_ALIASES.get(spec["sampler"].lower(), spec["sampler"].lower())
    # Olive's stop_when_goals_met / output_model_num ask for what olivepress always does
    # (keep the best that meets the goals); they are accepted and have no further effect.
    spec.pop("stop_when_goals_met", None)
    spec.pop("output_model_num", None)
    return spec


# Keys that name Python for olivepress to import and run.
USER_CODE_KEYS = (
    "user_script",
    "script_dir",
    "evaluate_func",
    "dataloader_func",
    "metric_func",
    "post_process_func",
    "load_dataset_func",
)


def user_code_references(raw: Any, where: str = "") -> list[str]:
    """Every place the config names Python to run, as 'where=value'.

    For example 'evaluators.e.metrics.0.user_script=m.py'.
    """
    found: list[str] = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            path = f"{where}.{key}" if where else str(key)
            if key in USER_CODE_KEYS and value:
                found.append(f"{path}={value}")
            else:
                found += user_code_references(value, path)
    elif isinstance(raw, list):
        for index, item in enumerate(raw):
            found += user_code_references(item, f"{where}.{index}")
    return found


def _unwrap_config(spec: Any) -> Any:
    """{"type": T, "config": {...}, ...} -> {"type": T, ...config, ...}."""
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        return spec
    inner = spec["config"]
    outer = {key: value for key, value in spec.items() if key != "config"}
    for key in inner:
        if key in outer:
            raise OlivepressError(f"'{key}' is given both beside 'type' and inside 'config'; keep one")
    return {**outer, **inner}


def _pass(name: str, spec: Any) -> Any:
    # Olive writes a pass as a list of one or more pass configs; olivepress runs one per name.
    if isinstance(spec, list):
        if len(spec) != 1:
            raise OlivepressError(
                f"passes.{name} lists {len(spec)} pass configs; give one (a mapping with 'type')"
            )
        spec = spec[0]
    spec = _unwrap_config(spec)
    if not isinstance(spec, dict):
        return spec
    entry = apply_key_treatments(
        "pass_entry", {k: v for k, v in spec.items() if k in ("host", "evaluator")}, f"passes.{name}."
    )
    return {k: v for k, v in spec.items() if k not in ("host", "evaluator")} | entry


def _system(name: str, spec: Any) -> Any:
    # Checked before the system's keys: an AzureML system's keys are beside the point.
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind is not None and kind not in SUPPORTED_SYSTEMS:
        raise OlivepressError(
            f"system '{name}' has type '{kind}', which olivepress does not run; olivepress runs "
            f"workflows on this machine or on a Ray cluster: use type {' or '.join(SUPPORTED_SYSTEMS)}"
        )
    spec = _unwrap_config(spec)
    if not isinstance(spec, dict):
        return spec
    spec = apply_key_treatments("system_config", spec, f"systems.{name}.")
    if isinstance(spec.get("accelerators"), list):
        spec["accelerators"] = [
            apply_key_treatments("accelerator", item, f"systems.{name}.accelerators.{i}.")
            if isinstance(item, dict)
            else item
            for i, item in enumerate(spec["accelerators"])
        ]
    return spec


def use_ray_host(raw: dict[str, Any], address: str) -> dict[str, Any]:
    """The config (either shape) with its host set to the Ray cluster at `address` (`run --ray`).

    A Ray host already named gets the new address; otherwise a system 'ray' is added and made
    the host, and the system the model was meant for stays the target.
    """
    raw = dict(raw)
    engine = dict(raw["engine"]) if isinstance(raw.get("engine"), dict) else {}
    systems = {name: _system(name, spec) for name, spec in (raw.get("systems") or {}).items()}
    host, target = raw.get("host", engine.get("host")), raw.get("target", engine.get("target"))
    if host in systems and isinstance(systems[host], dict) and systems[host].get("type") == "Ray":
        systems[host] = {**systems[host], "address": address}
    else:
        if target is None:
            target = host if host is not None else (next(iter(systems)) if len(systems) == 1 else None)
        host = "ray"
        while host in systems:
            host += "_"
        systems[host] = {"type": "Ray", "address": address}
    if "engine" in raw:
        raw["engine"] = {key: value for key, value in engine.items() if key not in ("host", "target")}
    raw.update(systems=systems, host=host)
    if target is not None:
        raw["target"] = target
    return raw


def _input_model(spec: Any) -> Any:
    spec = _unwrap_config(spec)
    if not isinstance(spec, dict):
        return spec
    spec = dict(spec)
    # The seed's PyTorchModel and HuggingFaceModel are what olivepress calls HfModel.
    kind = spec.get("type", "HfModel")
    spec["type"] = MODEL_TYPE_ALIASES.get(kind, kind)
    section = "input_model_onnx" if spec["type"] == "OnnxModel" else "input_model_hf"
    spec = apply_key_treatments(section, spec, "input_model.")
    model_path = spec.get("model_path")
    if isinstance(model_path, dict):
        kind = model_path.get("type", "a reference")
        raise OlivepressError(f"input_model.model_path of type '{kind}' is an Azure ML asset; {_AZURE_HINT}")
    hf_config = spec.pop("hf_config", None)
    if isinstance(hf_config, dict):
        hf_config = dict(hf_config)
        name = hf_config.pop("model_name", None)
        if name is not None and spec.get("model_path") is None:
            spec["model_path"] = name
        if "task" in hf_config:
            spec.setdefault("task", hf_config.pop("task"))
        load_kwargs = dict(spec.get("load_kwargs") or {})
        for key in ("from_pretrained_args", "model_loading_args", "load_kwargs"):
            load_kwargs.update(hf_config.pop(key, None) or {})
        if load_kwargs:
            spec["load_kwargs"] = load_kwargs
        if hf_config:
            unknown = ", ".join(sorted(hf_config))
            raise OlivepressError(
                f"unknown key(s) in input_model.hf_config: {unknown}; known: model_name, task, "
                "from_pretrained_args"
            )
    return spec


# Olive's text-generation pre-processing names -> olivepress's.
_PRE_PROCESS_KEYS = {
    "max_seq_len": "source_max_len",
    "strategy": "corpus_strategy",
    "chat_template": "use_chat_template",
}


def _pre_process(section: dict[str, Any], where: str) -> dict[str, Any]:
    section = apply_key_treatments("pre_process_text_generation", section, where)
    renamed = {}
    for key, value in section.items():
        new = _PRE_PROCESS_KEYS.get(key, key)
        if key == "strategy" and isinstance(value, str):
            value = {"line_by_line": "line-by-line"}.get(value, value)
        if key == "chat_template" and not isinstance(value, bool):
            raise OlivepressError(
                f"{where}chat_template: give true to use the tokenizer's chat template (a template "
                "text is not supported; put it in the tokenizer's chat_template)"
            )
        if new in renamed and renamed[new] != value:
            raise OlivepressError(
                f"{where}'{key}' and '{new}' are the same option with different values; keep one"
            )
        renamed[new] = value
    return renamed


def _data_config(spec: Any) -> Any:
    if not isinstance(spec, dict):
        return spec
    spec = dict(spec)
    where = f"data_configs.{spec.get('name')}."
    for key in (
        "load_dataset_config",
        "pre_process_data_config",
        "post_process_data_config",
        "dataloader_config",
    ):
        section = spec.get(key)
        if isinstance(section, dict) and isinstance(section.get("params"), dict):
            rest = {k: v for k, v in section.items() if k not in ("params", "type")}
            spec[key] = {**section["params"], **rest}
    spec = apply_key_treatments("data_config", spec, where)
    if isinstance(spec.get("load_dataset_config"), dict):
        spec["load_dataset_config"] = apply_key_treatments(
            "load_dataset", spec["load_dataset_config"], f"{where}load_dataset_config."
        )
    if isinstance(spec.get("pre_process_data_config"), dict):
        spec["pre_process_data_config"] = _pre_process(
            spec["pre_process_data_config"], f"{where}pre_process_data_config."
        )
    params = spec.pop("params_config", None)
    if isinstance(params, dict):
        params = dict(params)
        components = params.pop("component_kwargs", None) or {}
        load = dict(components.get("load_dataset") or {})
        for key in ("data_name", "data_files", "split"):
            if key in params:
                load[key] = params.pop(key)
        # model_name / task named the tokenizer in the old form; the workflow's model supplies it now.
        params.pop("model_name", None)
        params.pop("task", None)
        if load:
            spec["load_dataset_config"] = {**load, **(spec.get("load_dataset_config") or {})}
        pre = components.get("pre_process_data")
        if pre:
            spec["pre_process_data_config"] = {**pre, **(spec.get("pre_process_data_config") or {})}
        if params:
            unknown = ", ".join(sorted(params))
            raise OlivepressError(
                f"unknown key(s) in data config '{spec.get('name')}' params_config: {unknown}"
            )
    data_files = (spec.get("load_dataset_config") or {}).get("data_files")
    if isinstance(data_files, dict) and "type" in data_files:
        raise OlivepressError(
            f"data config '{spec.get('name')}' reads data_files of type '{data_files['type']}' (a "
            "cloud data store); "
            f"{_AZURE_HINT.replace('folders, .gguf files and models in the local Hugging Face cache', 'data files')}"  # noqa: E501
        )
    return spec

"""Evaluating one model with an evaluator config: every metric, on the backend it names.

The result maps '<metric>.<sub-type>' to a MetricValue. A backend is opened once per model and
shared by the metrics that use it; peak memory is measured first, on a load of its own.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from olivepress.data.config import DataConfig
from olivepress.errors import OlivepressError
from olivepress.evaluate.backends import Backend, backend_name, open_backend
from olivepress.evaluate.config import FAMILIES, EvaluatorConfig, MetricConfig, SubMetric
from olivepress.models.handles import ModelHandle

log = logging.getLogger("olivepress")


@dataclass
class MetricValue:
    value: float
    higher_is_better: bool
    unit: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_model(
    model: ModelHandle,
    evaluator: EvaluatorConfig,
    *,
    data_configs: Mapping[str, DataConfig] | None = None,
    execution_provider: str = "CPUExecutionProvider",
) -> dict[str, MetricValue]:
    """Measure `model` with every metric of `evaluator`; '<metric>.<sub-type>' -> value."""
    data_configs = data_configs or {}
    raw: dict[str, dict[str, float]] = {}
    ordered = sorted(evaluator.metrics, key=lambda m: m.type != "peak_memory")
    backends: dict[str, Backend] = {}
    timings: dict[tuple[Any, ...], Any] = {}
    try:
        for metric in ordered:
            log.debug("evaluating %s (%s) on %s", metric.name, metric.type, model.path)
            raw[metric.name] = _measure(model, metric, backends, timings, data_configs, execution_provider)
    finally:
        backends.clear()
        gc.collect()
    results: dict[str, MetricValue] = {}
    for metric in evaluator.metrics:
        for sub in _reported_sub_types(metric, raw[metric.name]):
            if sub.name not in raw[metric.name]:
                got = ", ".join(sorted(raw[metric.name])) or "nothing"
                raise OlivepressError(
                    f"metric '{metric.name}' gives no '{sub.name}' for {model.path} (it gives {got}); "
                    "choose one of those sub-types"
                )
            unit = FAMILIES[metric.type].unit
            results[f"{metric.name}.{sub.name}"] = MetricValue(
                float(raw[metric.name][sub.name]), metric.higher_is_better(sub), unit
            )
    return results


def _reported_sub_types(metric: MetricConfig, measured: Mapping[str, float]) -> list[SubMetric]:
    """The configured sub-types; an lm_eval metric adds every other score its task reported."""
    subs = metric.resolved_sub_types()
    if metric.type == "lm_eval":
        named = {sub.name for sub in subs}
        subs = subs + [SubMetric(name=name) for name in measured if name not in named]
    return subs


def _backend(
    model: ModelHandle, metric: MetricConfig, backends: dict[str, Backend], provider: str
) -> Backend:
    name = backend_name(model, metric.backend)
    if name not in backends:
        backends[name] = open_backend(model, name, provider)
    return backends[name]


def _measure(
    model: ModelHandle,
    metric: MetricConfig,
    backends: dict[str, Backend],
    timings: dict[tuple[Any, ...], Any],
    data_configs: Mapping[str, DataConfig],
    provider: str,
) -> dict[str, float]:
    from olivepress.evaluate import footprint_metrics, timing

    if metric.type == "size_on_disk":
        return {"size_mb": footprint_metrics.size_on_disk_mb(model)}
    if metric.type == "peak_memory":
        return {"peak_rss_mb": _peak_memory(model, metric, provider)}
    if metric.type == "custom":
        return _custom(model, metric)
    if metric.type == "lm_eval":
        from olivepress.evaluate.harness import run_task

        return run_task(lambda: _backend(model, metric, backends, provider), metric)
    backend = _backend(model, metric, backends, provider)
    if metric.type in ("latency", "throughput"):
        # Latency and throughput with the same settings read the same timed runs: half the time.
        key = (
            backend.name,
            metric.warmup_runs,
            metric.timed_runs,
            metric.prompt_tokens,
            metric.decode_tokens,
            metric.batch_size,
            metric.seq_len,
        )
        if key not in timings:
            timings[key] = timing.measure(backend, metric)
        if metric.type == "latency":
            return timing.latency_values(timings[key])
        return timing.throughput_values(timings[key], backend, metric)
    if metric.type == "perplexity":
        from olivepress.evaluate.perplexity import perplexity_of_logits

        ids = backend.encode(_text(metric, data_configs))
        return {
            "perplexity": perplexity_of_logits(
                backend.logits, ids, metric.seq_len, max(metric.seq_len // 2, 1)
            )
        }
    if metric.type == "accuracy":
        from olivepress.evaluate.accuracy import accuracy

        return accuracy(backend, metric, _records(metric, data_configs))
    raise OlivepressError(
        f"metric type '{metric.type}' is not measured yet"
    )  # unreachable: the config checks types


def _peak_memory(model: ModelHandle, metric: MetricConfig, provider: str) -> float:
    from olivepress.evaluate.footprint_metrics import peak_rss_mb
    from olivepress.evaluate.timing import prompt_ids

    def load_and_run() -> None:
        backend = open_backend(model, backend_name(model, metric.backend), provider)
        if backend.is_llm:
            backend.prefill_decode(prompt_ids(backend, metric.prompt_tokens), metric.decode_tokens)
        else:
            backend.forward_batch(metric.batch_size, metric.seq_len)

    gc.collect()
    value = peak_rss_mb(load_and_run)
    gc.collect()
    return value


def _data(metric: MetricConfig, data_configs: Mapping[str, DataConfig]) -> DataConfig:
    ref = metric.data_config
    if isinstance(ref, DataConfig):
        return ref
    if ref not in data_configs:
        known = ", ".join(sorted(data_configs)) or "none"
        raise OlivepressError(
            f"metric '{metric.name}' names data config '{ref}', which is not under data_configs "
            f"(defined: {known})"
        )
    return data_configs[ref]


def _user_function(metric: MetricConfig, name: str):
    from olivepress.evaluate.user_code import load_function

    assert metric.user_script is not None
    return load_function(metric.user_script, name)


def _records(metric: MetricConfig, data_configs: Mapping[str, DataConfig]) -> list[dict[str, Any]]:
    if metric.dataloader_func:
        return list(_user_function(metric, metric.dataloader_func)(**metric.func_kwargs))
    from olivepress.data import load_records

    return list(load_records(_data(metric, data_configs)))


def _text(metric: MetricConfig, data_configs: Mapping[str, DataConfig]) -> str:
    if metric.dataloader_func:
        return str(_user_function(metric, metric.dataloader_func)(**metric.func_kwargs))
    if metric.data_config is None:
        from olivepress.data.shipped import heldout_text

        return heldout_text(metric.text or "heldout")
    from olivepress.data import load_records, render_texts

    data = _data(metric, data_configs)
    return "\n\n".join(render_texts(load_records(data), data.pre_process_data_config))


def _custom(model: ModelHandle, metric: MetricConfig) -> dict[str, float]:
    assert metric.evaluate_func is not None
    func = _user_function(metric, metric.evaluate_func)
    try:
        value = func(model, **metric.func_kwargs)
    except OlivepressError:
        raise
    except Exception as exc:
        raise OlivepressError(
            f"custom metric '{metric.name}': {metric.evaluate_func} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(value, int | float):
        return {metric.resolved_sub_types()[0].name: float(value)}
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}
    raise OlivepressError(
        f"custom metric '{metric.name}': {metric.evaluate_func} returned {type(value).__name__}; "
        "return a number or a dict of numbers"
    )

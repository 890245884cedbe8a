"""Latency and throughput: warm-up runs, then a fixed number of timed runs.

An LLM run is a prompt of `prompt_tokens` tokens (prefill) followed by `decode_tokens` greedy
steps (decode); its latency is the whole run. Other models run one forward pass on a batch.
Percentiles are nearest-rank over the timed runs, so p50 of 10 runs is a measured run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from olivepress.data.shipped import heldout_text
from olivepress.evaluate.backends import Backend
from olivepress.evaluate.config import MetricConfig


@dataclass
class Timings:
    """Seconds per timed run: whole runs, and for LLMs their prefill and decode parts."""

    runs: list[float] = field(default_factory=list)
    prefill: list[float] = field(default_factory=list)
    decode: list[float] = field(default_factory=list)


def prompt_ids(backend: Backend, tokens: int) -> list[int]:
    """`tokens` ids of held-out prose: real text, the same for every model with the same tokenizer."""
    ids = backend.encode(heldout_text())
    while len(ids) < tokens:
        ids = ids + ids
    return ids[:tokens]


def measure(backend: Backend, metric: MetricConfig) -> Timings:
    import time

    timings = Timings()
    ids = prompt_ids(backend, metric.prompt_tokens) if backend.is_llm else []
    for index in range(metric.warmup_runs + metric.timed_runs):
        if backend.is_llm:
            prefill, decode = backend.prefill_decode(ids, metric.decode_tokens)
            seconds = prefill + decode
        else:
            started = time.perf_counter()
            backend.forward_batch(metric.batch_size, metric.seq_len)
            seconds = prefill = time.perf_counter() - started
            decode = 0.0
        if index >= metric.warmup_runs:
            timings.runs.append(seconds)
            timings.prefill.append(prefill)
            timings.decode.append(decode)
    return timings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_values(timings: Timings) -> dict[str, float]:
    ms = [seconds * 1000 for seconds in timings.runs]
    values = {f"p{q}": percentile(ms, q) for q in (50, 75, 90, 95, 99)}
    return {"avg": sum(ms) / len(ms), "min": min(ms), "max": max(ms), **values}


def throughput_values(timings: Timings, backend: Backend, metric: MetricConfig) -> dict[str, float]:
    if not backend.is_llm:
        return {"samples_per_s": metric.batch_size * len(timings.runs) / sum(timings.runs)}
    # Totals over all timed runs: a ratio of sums is steadier than a mean of ratios.
    prefill = metric.prompt_tokens * len(timings.prefill) / sum(timings.prefill)
    decode = metric.decode_tokens * len(timings.decode) / sum(timings.decode)
    return {
        "prefill_tokens_per_s": prefill,
        "decode_tokens_per_s": decode,
        "samples_per_s": len(timings.runs) / sum(timings.runs),
    }

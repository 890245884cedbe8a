"""Evaluator configs: which metrics to measure, their sub-metrics, and the goal each must meet.

The shape is the seed's (Olive's) evaluator, flattened the same way as passes:

    "evaluators": {"common": {"metrics": [
        {"name": "ppl", "type": "perplexity",
         "sub_types": [{"name": "perplexity", "goal": {"type": "percent-max-degradation", "value": 10}}]},
        {"name": "speed", "type": "throughput", "sub_types": [{"name": "decode_tokens_per_s", "priority": 1}]}
    ]}}

A metric's result is named ``<metric name>.<sub-type>`` (``speed.decode_tokens_per_s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from olivepress.data.config import DataConfig
from olivepress.errors import OlivepressError, did_you_mean

MetricType = Literal[
    "latency", "throughput", "accuracy", "perplexity", "size_on_disk", "peak_memory", "custom", "lm_eval"
]
GoalType = Literal[
    "threshold", "min-improvement", "max-degradation", "percent-min-improvement", "percent-max-degradation"
]


@dataclass(frozen=True)
class Family:
    """What a metric type measures: its sub-types, their unit, and which way is better."""

    sub_types: tuple[str, ...]
    default: tuple[str, ...]
    unit: str
    higher_is_better: bool


FAMILIES: dict[str, Family] = {
    "latency": Family(
        ("avg", "p50", "p75", "p90", "p95", "p99", "min", "max"), ("avg", "p50", "p90", "p99"), "ms", False
    ),
    "throughput": Family(
        ("decode_tokens_per_s", "prefill_tokens_per_s", "samples_per_s"),
        ("decode_tokens_per_s", "prefill_tokens_per_s"),
        "/s",
        True,
    ),
    "accuracy": Family(("accuracy_score", "exact_match", "rouge_l"), ("accuracy_score",), "", True),
    "perplexity": Family(("perplexity",), ("perplexity",), "", False),
    "size_on_disk": Family(("size_mb",), ("size_mb",), "MB", False),
    "peak_memory": Family(("peak_rss_mb",), ("peak_rss_mb",), "MB", False),
    "custom": Family((), (), "", True),
    # An lm-eval task reports its own metrics (acc, acc_norm, exact_match, ...): all of them are
    # results; sub_types name the ones that carry a goal or a priority.
    "lm_eval": Family((), (), "", True),
}

# lm-eval metrics where lower is better (the harness's perplexity-style scores).
LOWER_IS_BETTER_LM_METRICS = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Goal(_Strict):
    """A bar a sub-metric must clear: absolute (threshold) or relative to the input model's value."""

    type: GoalType
    value: float = Field(
        ..., ge=0, description="The threshold, or the allowed change (a percentage for percent-*)."
    )


class SubMetric(_Strict):
    name: str
    goal: Goal | None = None
    priority: int | None = Field(
        None, ge=1, description="Rank as a search objective (1 first); none: not an objective."
    )
    higher_is_better: bool | None = Field(
        None, description="Default: what the metric type says (custom: true)."
    )


class MetricConfig(_Strict):
    """One metric: a type, the sub-types to report, and how to measure it."""

    name: str
    type: MetricType
    sub_types: list[SubMetric] = Field(
        default_factory=list, description="Default: the type's usual sub-types."
    )
    backend: Literal["auto", "pytorch", "onnxruntime", "ort-genai"] = Field(
        "auto",
        description="auto: PyTorch for HF models, ORT GenAI for ORT GenAI folders, ONNX Runtime otherwise.",
    )
    data_config: str | DataConfig | None = Field(
        None,
        description=(
            "Data for accuracy and perplexity (a name under data_configs, or inline); perplexity defaults "
            "to shipped held-out text."
        ),
    )
    # timing
    warmup_runs: int = Field(3, ge=0, description="Untimed runs before the timed ones (latency, throughput).")
    timed_runs: int = Field(10, ge=1, description="Timed runs (latency, throughput).")
    prompt_tokens: int = Field(64, ge=1, description="Prompt length of an LLM run (latency, throughput).")
    decode_tokens: int = Field(32, ge=1, description="Tokens generated per LLM run (latency, throughput).")
    batch_size: int = Field(1, ge=1, description="Batch of a non-LLM run; lm_eval: sequences per forward.")
    seq_len: int = Field(128, ge=2, description="Tokens per non-LLM sample; perplexity window.")
    # accuracy / perplexity
    prompt_template: str = Field("{prompt}", description="Accuracy: the prompt a record becomes.")
    label_field: str = Field(
        "response", description="Accuracy: the record field holding the expected answer."
    )
    max_new_tokens: int = Field(32, ge=1, description="Accuracy: tokens generated per prompt.")
    use_chat_template: bool = Field(
        False, description="Accuracy: wrap the prompt in the model's chat template."
    )
    max_samples: int | None = Field(20, ge=1, description="Accuracy: records evaluated; perplexity: none.")
    text: str | None = Field(
        None, description="Perplexity: a shipped held-out text's name (default 'heldout')."
    )
    # lm_eval (the lm-evaluation-harness)
    task: str | None = Field(None, description="lm_eval: the task (or group) to run: 'olivepress_travel_mc'.")
    task_config: dict[str, Any] | None = Field(
        None,
        description="lm_eval: the task defined inline (a task YAML's keys, as Olive's tasks take it); task "
        "is its 'task'.",
    )
    limit: float | None = Field(
        None, gt=0, description="lm_eval: examples per task (a number), or a fraction of them (below 1)."
    )
    max_length: int | None = Field(
        None, ge=2, description="lm_eval: most tokens per sequence (default: the model's context length)."
    )
    num_fewshot: int | None = Field(None, ge=0, description="lm_eval: few-shot examples (default: task's).")
    apply_chat_template: bool | str = Field(False, description="lm_eval: use the model's chat template.")
    system_instruction: str | None = Field(None, description="lm_eval: a system prompt for every request.")
    fewshot_as_multiturn: bool = Field(False, description="lm_eval: few-shot examples as chat turns.")
    bootstrap_iters: int = Field(
        0, ge=0, description="lm_eval: bootstrap resamples for standard errors (0: none; not reported)."
    )
    include_path: list[str] = Field(
        default_factory=list, description="lm_eval: folders of more task YAMLs (beside the shipped ones)."
    )
    # user code
    user_script: str | None = Field(
        None, description="custom: Python file with the functions below (needs allow_user_code)."
    )
    evaluate_func: str | None = Field(
        None, description="custom: function(model_handle, **func_kwargs) -> float or {sub_type: float}."
    )
    dataloader_func: str | None = Field(
        None, description="Function() -> records (accuracy) or text (perplexity), from user_script."
    )
    func_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the user functions."
    )

    @field_validator("sub_types", mode="before")
    @classmethod
    def _names_or_dicts(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> MetricConfig:
        family = FAMILIES[self.type]
        if self.type == "custom":
            if not (self.user_script and self.evaluate_func):
                raise OlivepressError(
                    f"custom metric '{self.name}' needs user_script (a Python file) and evaluate_func "
                    "(a function in it)"
                )
            if not self.sub_types:
                raise OlivepressError(
                    f"custom metric '{self.name}' needs sub_types: the names its function returns"
                )
        for sub in self.sub_types:
            if self.type not in ("custom", "lm_eval") and sub.name not in family.sub_types:
                raise OlivepressError(
                    f"metric '{self.name}' ({self.type}) has no sub-type "
                    f"'{sub.name}'{did_you_mean(sub.name, family.sub_types)}; "
                    f"known: {', '.join(family.sub_types)}"
                )
        if self.type == "lm_eval" and not self.task:
            raise OlivepressError(
                f'lm_eval metric \'{self.name}\' needs a task (e.g. "task": "olivepress_travel_mc")'
            )
        if self.dataloader_func and not self.user_script:
            raise OlivepressError(
                f"metric '{self.name}' names dataloader_func but no user_script to find it in"
            )
        if self.type == "accuracy" and self.data_config is None and not self.dataloader_func:
            raise OlivepressError(
                f"accuracy metric '{self.name}' needs a data_config (records with the prompt and the "
                "expected answer)"
            )
        return self

    def resolved_sub_types(self) -> list[SubMetric]:
        """The sub-types to report: as configured, else the type's defaults."""
        return self.sub_types or [SubMetric(name=name) for name in FAMILIES[self.type].default]

    def higher_is_better(self, sub: SubMetric) -> bool:
        if sub.higher_is_better is not None:
            return sub.higher_is_better
        if self.type == "lm_eval":
            return not any(sub.name == m or sub.name.startswith(f"{m}_") for m in LOWER_IS_BETTER_LM_METRICS)
        return FAMILIES[self.type].higher_is_better

    @property
    def user_code(self) -> list[str]:
        """What Python this metric would run from the user: '<script>:<function>' entries."""
        names = [self.evaluate_func, self.dataloader_func]
        return [f"{self.user_script}:{name}" for name in names if name and self.user_script]


class EvaluatorConfig(_Strict):
    metrics: list[MetricConfig] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> EvaluatorConfig:
        seen: set[str] = set()
        for metric in self.metrics:
            if metric.name in seen:
                raise OlivepressError(f"two metrics are named '{metric.name}'; give each metric its own name")
            seen.add(metric.name)
        return self

    def metric_names(self) -> list[str]:
        """Every '<metric>.<sub-type>' this evaluator reports."""
        return [f"{m.name}.{s.name}" for m in self.metrics for s in m.resolved_sub_types()]

    def find(self, ref: str) -> tuple[MetricConfig, SubMetric]:
        """The metric and sub-type `ref` names: 'name.sub', 'name-sub' (Olive's spelling), or 'name'
        when that metric reports one sub-type."""
        by_name = {m.name: m for m in self.metrics}
        for sep in (".", "-"):
            head, _, tail = ref.partition(sep)
            if tail and head in by_name:
                for sub in by_name[head].resolved_sub_types():
                    if sub.name == tail:
                        return by_name[head], sub
        for sep in (".", "-"):
            head, _, tail = ref.partition(sep)
            if tail and head in by_name and by_name[head].type == "lm_eval":
                # Any metric the task reports; whether it does is known once the task has run.
                return by_name[head], SubMetric(name=tail)
        if ref in by_name and len(by_name[ref].resolved_sub_types()) == 1:
            return by_name[ref], by_name[ref].resolved_sub_types()[0]
        names = self.metric_names()
        hint = did_you_mean(ref, names)
        raise OlivepressError(
            f"'{ref}' names no metric the evaluator reports{hint}; known: {', '.join(names)}"
        )

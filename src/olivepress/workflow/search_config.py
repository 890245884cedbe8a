"""The search strategy config: how candidates are sampled and what makes one the best.

    "search_strategy": {"execution_order": "joint", "sampler": "tpe", "max_samples": 6, "seed": 0,
                        "objectives": [{"metric": "speed.decode_tokens_per_s", "higher_is_better": true}]}

The seed's older spelling (search_algorithm, search_algorithm_config.num_samples, exhaustive)
is rewritten into this one by workflow/normalize.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from olivepress.errors import OlivepressError


class ObjectiveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = Field(
        ..., description="'<metric>.<sub-type>' the evaluator reports, e.g. 'speed.decode_tokens_per_s'."
    )
    higher_is_better: bool | None = Field(None, description="Default: what the metric says.")
    priority: int | None = Field(None, ge=1, description="1 is decided first; default: the order written.")

    @field_validator("metric")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise OlivepressError(
                'a search objective names no metric; write e.g. {"metric": "speed.decode_tokens_per_s"}'
            )
        return value


class SearchStrategyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    execution_order: Literal["joint", "pass-by-pass"] = Field(
        "joint",
        description=(
            "joint: search every pass's options together; pass-by-pass: one pass at a time, in order."
        ),
    )
    sampler: Literal["sequential", "random", "tpe"] = Field(
        "sequential",
        description=(
            "sequential: every combination in order; random; tpe: Optuna's Tree-structured Parzen Estimator."
        ),
    )
    max_samples: int | None = Field(
        None, ge=1, description="Most candidates to evaluate (per pass for pass-by-pass); default: all."
    )
    seed: int = Field(0, description="Seed of the random and tpe samplers.")
    objectives: list[ObjectiveConfig] = Field(
        default_factory=list,
        description="What 'best' means, in priority order; default: metric sub-types with a priority.",
    )

    @field_validator("objectives", mode="before")
    @classmethod
    def _names_or_dicts(cls, value: Any) -> Any:
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and "metric" not in item:
                    raise OlivepressError(
                        f'search objective {item} names no metric; give it "metric": "<metric>.<sub-type>"'
                    )
            return [{"metric": item} if isinstance(item, str) else item for item in value]
        return value


@dataclass(frozen=True)
class Objective:
    """A resolved objective: a metric the evaluator reports and which way is better."""

    metric: str
    higher_is_better: bool

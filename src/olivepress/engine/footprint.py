"""footprint.json: every model a workflow produced, where it came from, and what it cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FootprintNode:
    model_id: str
    parent_model_id: str | None
    pass_name: str | None
    pass_type: str | None
    config: dict[str, Any]
    from_cache: bool
    duration_s: float
    model: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Footprint:
    input_model: dict[str, Any]
    nodes: list[FootprintNode] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    device: str = "cpu"
    execution_provider: str = "CPUExecutionProvider"
    total_duration_s: float = 0.0
    checks: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)  # where the passes ran: LocalSystem, or Ray, its slots
    # With an evaluator: the input model's metrics, and per flow every candidate evaluated
    # (one without a search), the goals, the objectives and the candidate chosen.
    input_metrics: dict[str, Any] = field(default_factory=dict)
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

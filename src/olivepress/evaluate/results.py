"""Showing and keeping metric results: a table on the console and a JSON file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olivepress.models.handles import ModelHandle


@dataclass
class Evaluation:
    """A model's metrics under a workflow's evaluator, and its threshold goals."""

    model: ModelHandle
    metrics: dict[str, Any]  # metric.sub_type -> MetricResult
    goals: dict[str, str] = field(default_factory=dict)  # metric.sub_type -> "<= 14.5: met" / "...: MISSED"
    met: dict[str, bool] = field(default_factory=dict)
    output_path: Path | None = None  # the JSON file the results were written to

    @property
    def goals_met(self) -> bool:
        return all(self.met.values())


def print_metrics(title: str, results: dict[str, Any], goals: dict[str, str] | None = None) -> None:
    from rich.table import Table

    from olivepress.ui import console

    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("better")
    if goals:
        table.add_column("goal")
    for name, value in results.items():
        row = [name, f"{value.value:.4g}", value.unit, "higher" if value.higher_is_better else "lower"]
        table.add_row(*row, *([goals.get(name, "")] if goals else []))
    console.print(table)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    import json

    from olivepress.paths import atomic_file, check_writable

    target = Path(path).expanduser().resolve()
    check_writable(target.parent, "output_path")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))

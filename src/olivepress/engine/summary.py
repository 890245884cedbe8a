"""The short human summary printed at the end of a run."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from olivepress.engine.report import measured
from olivepress.engine.runner import WorkflowResult
from olivepress.ui import console


def print_summary(result: WorkflowResult) -> None:
    table = Table(title="olivepress run", title_justify="left", show_edge=False)
    table.add_column("pass")
    table.add_column("type")
    table.add_column("status")
    table.add_column("time", justify="right")
    seen = set()
    for flow in result.flows:
        for node in flow.nodes:
            if node.model_id in seen:
                continue
            seen.add(node.model_id)
            status = "[green]cached[/]" if node.from_cache else "ran"
            elapsed = "-" if node.from_cache else f"{node.duration_s:.1f} s"
            table.add_row(node.pass_name or "", node.pass_type or "", status, elapsed)
    console.print(table)
    for flow in result.flows:
        if flow.evaluation is not None:
            _print_candidates(flow.evaluation, result.footprint.input_metrics)
        console.print(f"Output model: [bold]{flow.model.path}[/]")
        console.print(f"Footprint:    {flow.output_dir / 'footprint.json'}")
        console.print(f"Report:       {flow.output_dir / 'report.html'} (and report.md)")
    console.print(f"Total time:   {result.footprint.total_duration_s:.1f} s")


def _print_candidates(evaluation: dict[str, Any], input_metrics: dict[str, Any]) -> None:
    shown = [o["metric"] for o in evaluation["objectives"]]
    shown += [m for m in evaluation["goals"] if m not in shown]
    shown = shown or list(measured(evaluation)[0]["metrics"])
    table = Table(
        title="candidates" if evaluation.get("search") else "metrics", title_justify="left", show_edge=False
    )
    table.add_column("#")
    table.add_column("options")
    for metric in shown:
        table.add_column(metric, justify="right")
    table.add_column("goals")
    if input_metrics:
        table.add_row("in", "input model", *(f"{input_metrics[m]['value']:.4g}" for m in shown), "")
    for c in evaluation["candidates"]:
        mark = "[bold green]*[/]" if c["index"] == evaluation["chosen"] else ""
        options = ", ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in c["point"].items()) or "-"
        if c.get("error"):
            table.add_row(str(c["index"]), options, *(["-"] * len(shown)), f"[red]failed[/]: {c['error']}")
            continue
        goals = "" if not c["goals"] else ("met" if c["meets_goals"] else "[red]missed[/]")
        table.add_row(
            f"{c['index']}{mark}", options, *(f"{c['metrics'][m]['value']:.4g}" for m in shown), goals
        )
    console.print(table)
    console.print(f"Chosen: {evaluation['reason']}")

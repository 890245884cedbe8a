"""The short human summary printed at the end of a run."""

from __future__ import annotations

from rich.table import Table

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
        console.print(f"Output model: [bold]{flow.model.path}[/]")
        console.print(f"Footprint:    {flow.output_dir / 'footprint.json'}")
    console.print(f"Total time:   {result.footprint.total_duration_s:.1f} s")

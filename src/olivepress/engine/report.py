"""report.md and report.html in the output folder: what ran, what it cost, what was measured,
which candidate was kept and why, and (after a search) a Pareto plot, pareto.png.

Everything comes from the footprint, so a report can be rebuilt from footprint.json alone.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

PLOT = "pareto.png"


def measured(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidates that have metrics (a failed one, on a Ray host, has none)."""
    return [c for c in evaluation["candidates"] if not c.get("error")]


def write_report(folder: Path, footprint: dict[str, Any], output_dir: Path) -> None:
    evaluation = next(
        (e for e in footprint.get("evaluations", []) if e.get("output_dir") == str(output_dir)), None
    )
    plot = None
    if evaluation and evaluation.get("search") and len(measured(evaluation)) > 1:
        plot = pareto_plot(evaluation, folder / PLOT)
    sections = _sections(footprint, evaluation, plot is not None)
    (folder / "report.md").write_text(_markdown(sections))
    image = base64.b64encode(plot.read_bytes()).decode() if plot else None
    (folder / "report.html").write_text(_html(sections, image))


# A section: (title, paragraphs, table header, table rows).
Section = tuple[str, list[str], list[str], list[list[str]]]


def _sections(footprint: dict[str, Any], evaluation: dict[str, Any] | None, has_plot: bool) -> list[Section]:
    model = footprint["input_model"]
    intro = [
        f"Input model: `{model.get('path')}` ({model.get('kind')}), target {footprint['device']} / "
        f"{footprint['execution_provider']}.",
        f"Total time: {footprint['total_duration_s']:.1f} s.",
    ]
    output = footprint.get("output_model") or {}
    if output:
        intro.append(f"Output model: `{output.get('path')}`.")
    sections: list[Section] = [("olivepress report", intro, [], [])]
    passes = [
        [
            n["pass_name"] or "",
            n["pass_type"] or "",
            "cached" if n["from_cache"] else "ran",
            "-" if n["from_cache"] else f"{n['duration_s']:.1f} s",
            _options(n["config"]),
        ]
        for n in footprint["nodes"]
    ]
    sections.append(
        (
            "Passes",
            [
                "Every pass run for this workflow (a search runs some passes once per candidate; the "
                "cache shares common prefixes)."
            ],
            ["pass", "type", "cache", "time", "options"],
            passes,
        )
    )
    if evaluation is None:
        return sections
    metrics = list(footprint.get("input_metrics") or {}) or list(measured(evaluation)[0]["metrics"])
    header = ["model", *(_metric_header(m, footprint, evaluation) for m in metrics), "goals met", "Pareto"]
    rows = []
    if footprint.get("input_metrics"):
        rows.append(["input", *(_fmt(footprint["input_metrics"][m]["value"]) for m in metrics), "", ""])
    for c in evaluation["candidates"]:
        label = (
            f"{c['index']}{' (chosen)' if c['index'] == evaluation['chosen'] else ''}: {_point(c['point'])}"
        )
        if c.get("error"):
            rows.append([label, *(["failed"] * len(metrics)), f"failed: {c['error']}", ""])
            continue
        cells = [_fmt(c["metrics"][m]["value"]) + ("" if c["goals"].get(m, True) else " ✗") for m in metrics]
        rows.append([label, *cells, "yes" if c["meets_goals"] else "no", "yes" if c["pareto"] else ""])
    notes = []
    if evaluation["goals"]:
        notes.append(
            "Goals: "
            + "; ".join(f"{m} {text}" for m, text in evaluation["goals"].items())
            + ". ✗ marks a missed goal."
        )
    if evaluation["objectives"]:
        notes.append(
            "Objectives (in priority order): "
            + ", ".join(
                f"{o['metric']} ({'higher' if o['higher_is_better'] else 'lower'} is better)"
                for o in evaluation["objectives"]
            )
        )
    if evaluation.get("search"):
        s = evaluation["search"]
        notes.append(
            (
                f"Search: {s['execution_order']}, sampler {s['sampler']}, {len(evaluation['candidates'])} "
                "candidate(s) over "
            )
            + ", ".join(f"{k} in {v}" for k, v in evaluation["dimensions"].items())
            + "."
        )
    sections.append(("Metrics", notes, header, rows))
    chosen = [f"Kept {evaluation['reason']}."]
    if has_plot:
        chosen.append(
            f"The Pareto plot ({PLOT}) shows every candidate; the front joins those no other candidate "
            "beats on every objective and goal metric."
        )
    sections.append(("Chosen model", chosen, [], []))
    return sections


def _metric_header(metric: str, footprint: dict[str, Any], evaluation: dict[str, Any]) -> str:
    values = footprint.get("input_metrics", {}).get(metric) or measured(evaluation)[0]["metrics"][metric]
    arrow = "↑" if values["higher_is_better"] else "↓"
    unit = f" ({values['unit']})" if values.get("unit") else ""
    return f"{metric}{unit} {arrow}"


def _options(config: dict[str, Any]) -> str:
    shown = {k: v for k, v in config.items() if not (v is None or v is False or v == {} or v == [])}
    text = ", ".join(f"{k}={v}" for k, v in shown.items())
    return text if len(text) <= 80 else text[:77] + "..."


def _point(point: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in point.items()) or "as configured"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _markdown(sections: list[Section]) -> str:
    lines: list[str] = []
    for index, (title, paragraphs, header, rows) in enumerate(sections):
        lines += [f"{'#' if index == 0 else '##'} {title}", ""]
        for paragraph in paragraphs:
            lines += [paragraph, ""]
        if header:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
            lines.append("")
        if title == "Chosen model" and any(PLOT in p for p in paragraphs):
            lines += [f"![Pareto plot]({PLOT})", ""]
    return "\n".join(lines)


def _html(sections: list[Section], image: str | None) -> str:
    body: list[str] = []
    for index, (title, paragraphs, header, rows) in enumerate(sections):
        body.append(f"<h{1 if index == 0 else 2}>{html.escape(title)}</h{1 if index == 0 else 2}>")
        body += [f"<p>{_inline_code(p)}</p>" for p in paragraphs]
        if header:
            body.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            body += [
                "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
            ]
            body.append("</table>")
        if title == "Chosen model" and image:
            body.append(f'<img alt="Pareto plot" src="data:image/png;base64,{image}">')
    style = (
        "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem "
        ".6rem;text-align:left}"
        "th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2rem}img{max-width:100%}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>olivepress "
        f"report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _inline_code(text: str) -> str:
    parts = html.escape(text).split("`")
    return "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))


def pareto_plot(evaluation: dict[str, Any], path: Path) -> Path:
    """Candidates on the first objective (y) against the first other objective or goal metric (x)."""
    import logging

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    candidates = measured(evaluation)
    tracked = [o["metric"] for o in evaluation["objectives"]]
    tracked += [m for m in evaluation["goals"] if m not in tracked]
    y_metric = tracked[0]
    x_metric = tracked[1] if len(tracked) > 1 else None
    xs = [c["metrics"][x_metric]["value"] if x_metric else c["index"] for c in candidates]
    ys = [c["metrics"][y_metric]["value"] for c in candidates]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colours = ["tab:blue" if c["meets_goals"] else "tab:gray" for c in candidates]
    ax.scatter(xs, ys, c=colours, s=40, zorder=3, label="candidate (grey: misses a goal)")
    front = sorted((x, y) for x, y, c in zip(xs, ys, candidates, strict=True) if c["pareto"])
    if len(front) > 1:
        ax.plot(
            [x for x, _ in front], [y for _, y in front], color="tab:orange", zorder=2, label="Pareto front"
        )
    for x, y, c in zip(xs, ys, candidates, strict=True):
        ax.annotate(_point(c["point"]), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        if c["index"] == evaluation["chosen"]:
            ax.scatter([x], [y], marker="*", s=260, color="tab:red", zorder=4, label="chosen")
    if x_metric and x_metric in evaluation["goals"]:
        bound = float(evaluation["goals"][x_metric].split()[1])
        ax.axvline(
            bound,
            color="tab:red",
            linestyle="--",
            linewidth=1,
            label=f"goal: {x_metric} {evaluation['goals'][x_metric].split(' (')[0]}",
        )
    if y_metric in evaluation["goals"]:
        bound = float(evaluation["goals"][y_metric].split()[1])
        ax.axhline(bound, color="tab:red", linestyle=":", linewidth=1, label=f"goal on {y_metric}")
    ax.margins(x=0.3, y=0.1)  # room for the labels right of the rightmost points
    ax.set_xlabel(x_metric or "candidate")
    ax.set_ylabel(y_metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title("olivepress search: candidates and Pareto front", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

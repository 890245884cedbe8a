"""olivepress as Python functions: the same operations as the CLI commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from olivepress.engine.runner import WorkflowResult
from olivepress.models.handles import ModelHandle
from olivepress.workflow.config import WorkflowConfig


def run(
    config: str | Path | dict[str, Any] | WorkflowConfig,
    *,
    clean_cache: bool = False,
    log_level: int | None = None,
    overrides: dict[str, Any] | None = None,
    summary: bool = True,
    check: Callable[[ModelHandle], dict[str, Any]] | None = None,
) -> WorkflowResult:
    """Run a workflow (a config file, a dict in the seed's nested or the flat shape, or a
    WorkflowConfig) and return its result; the output is written to its output_dir."""
    from olivepress.engine.runner import run_workflow
    from olivepress.engine.summary import print_summary
    from olivepress.ui import setup_logging
    from olivepress.workflow.load import load_workflow

    workflow = load_workflow(config, overrides)
    setup_logging(workflow.config.log_severity_level if log_level is None else log_level)
    result = run_workflow(workflow, clean_cache=clean_cache, check=check)
    if summary:
        print_summary(result)
    return result

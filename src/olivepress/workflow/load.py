"""Reading a workflow config file and checking everything that can be checked before a run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from olivepress.errors import OlivepressError, did_you_mean
from olivepress.passes.base import PassConfig
from olivepress.passes.registry import PassSpec, find_pass
from olivepress.workflow.config import WorkflowConfig
from olivepress.workflow.errors import explain
from olivepress.workflow.normalize import normalize_workflow


@dataclass(frozen=True)
class PlannedPass:
    """One pass of a workflow, its options validated against the pass's own Config."""

    name: str
    spec: PassSpec
    config: PassConfig


@dataclass(frozen=True)
class Workflow:
    config: WorkflowConfig
    flows: list[list[PlannedPass]]
    device: str
    execution_provider: str


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a JSON or YAML file; syntax errors name the file and line."""
    if not path.is_file():
        raise OlivepressError(f"config file {path} does not exist; check the path")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise OlivepressError(f"{path} is not valid YAML{line}: {problem}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OlivepressError(f"{path} is not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise OlivepressError(f"{path} must hold a mapping of config keys (input_model, passes, ...), not {type(data).__name__}")
    return data


def load_workflow(
    source: str | Path | dict[str, Any] | WorkflowConfig, overrides: dict[str, Any] | None = None
) -> Workflow:
    """A checked Workflow from a config file path, a dict in either shape, or a WorkflowConfig.

    `overrides` replace top-level keys of the flat form (e.g. output_dir from a CLI flag).
    """
    if isinstance(source, WorkflowConfig):
        source = source.model_dump(exclude_unset=True)
    raw = read_config_file(Path(source)) if isinstance(source, str | Path) else source
    try:
        config = WorkflowConfig.model_validate({**normalize_workflow(raw), **(overrides or {})})
    except ValidationError as exc:
        raise explain(exc, WorkflowConfig) from None
    device, provider = _target(config)
    planned = {name: _plan_pass(name, spec) for name, spec in config.passes.items()}
    return Workflow(config=config, flows=_flows(config, planned), device=device, execution_provider=provider)


def _plan_pass(name: str, raw: dict[str, Any]) -> PlannedPass:
    if "type" not in raw:
        raise OlivepressError(f"pass '{name}' has no 'type'; say which pass it is, e.g. \"type\": \"ModelBuilder\"")
    spec = find_pass(str(raw["type"]))
    options = {key: value for key, value in raw.items() if key != "type"}
    config_cls: type[PassConfig] = spec.module.Config
    try:
        config = config_cls.model_validate(options)
    except ValidationError as exc:
        raise explain(exc, config_cls, where=f"passes.{name}") from None
    return PlannedPass(name=name, spec=spec, config=config)


def _flows(config: WorkflowConfig, planned: dict[str, PlannedPass]) -> list[list[PlannedPass]]:
    if not config.pass_flows:
        return [list(planned.values())]
    flows = []
    for flow in config.pass_flows:
        for name in flow:
            if name not in planned:
                raise OlivepressError(f"pass_flows names pass '{name}', which is not under passes{did_you_mean(name, planned)}")
        flows.append([planned[name] for name in flow])
    return flows


def _target(config: WorkflowConfig) -> tuple[str, str]:
    """The device and execution provider the workflow optimises for."""
    for role in ("host", "target"):
        ref = getattr(config, role)
        if ref is not None and ref not in config.systems:
            raise OlivepressError(f"{role} '{ref}' is not defined under systems{did_you_mean(ref, config.systems)}")
    device, providers = "cpu", None
    target = config.systems.get(config.target or "") if config.target else None
    if target is None and len(config.systems) == 1:
        target = next(iter(config.systems.values()))
    if target is not None and target.accelerators:
        device = target.accelerators[0].device
        providers = target.accelerators[0].execution_providers
    providers = config.execution_providers or providers
    provider = providers[0] if providers else _default_provider(device)
    return device, provider


def _default_provider(device: str) -> str:
    return {"cpu": "CPUExecutionProvider", "gpu": "CUDAExecutionProvider", "npu": "QNNExecutionProvider"}[device]

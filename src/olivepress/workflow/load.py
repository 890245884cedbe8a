"""Reading a workflow config file and checking everything that can be checked before a run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from olivepress.errors import OlivepressError, did_you_mean
from olivepress.evaluate.config import EvaluatorConfig
from olivepress.passes.base import PassConfig
from olivepress.passes.registry import PassSpec, find_pass
from olivepress.targets import default_provider
from olivepress.workflow.config import SystemConfig, WorkflowConfig
from olivepress.workflow.errors import explain
from olivepress.workflow.normalize import normalize_workflow, user_code_references
from olivepress.workflow.olive_compat import apply_option_treatments, check_pass_type
from olivepress.workflow.search_config import Objective, SearchStrategyConfig
from olivepress.workflow.search_space import split_options

TYPE = "type"  # the search dimension that picks the pass itself


@dataclass(frozen=True)
class PlannedPass:
    """One pass of a workflow, its options validated against the pass's own Config."""

    name: str
    spec: PassSpec
    config: PassConfig
    options: dict[str, Any] = field(default_factory=dict)  # the fixed options, as written
    choices: dict[str, list[Any]] = field(default_factory=dict)  # option -> values to search

    def with_values(self, values: dict[str, Any]) -> PlannedPass:
        """This pass with its searched options set to `values` (the others at their first choice)."""
        chosen = {key: options[0] for key, options in self.choices.items()} | values
        spec = find_pass(chosen.pop(TYPE)) if TYPE in chosen else self.spec
        config = spec.module.Config.model_validate({**self.options, **chosen})
        return replace(self, spec=spec, config=config)


@dataclass(frozen=True)
class Workflow:
    config: WorkflowConfig
    flows: list[list[PlannedPass]]
    device: str
    execution_provider: str
    evaluator: EvaluatorConfig | None = None
    search: SearchStrategyConfig | None = None
    objectives: list[Objective] = field(default_factory=list)
    host: SystemConfig | None = None  # the system named by `host`; a Ray one runs the candidates

    @property
    def searches(self) -> bool:
        return self.search is not None


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
            raise OlivepressError(
                f"{path} is not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
    if not isinstance(data, dict):
        raise OlivepressError(
            f"{path} must hold a mapping of config keys (input_model, passes, ...), not {type(data).__name__}"
        )
    return data


def load_workflow(
    source: str | Path | dict[str, Any] | WorkflowConfig,
    overrides: dict[str, Any] | None = None,
    *,
    allow_user_code: bool = False,
) -> Workflow:
    """A checked Workflow from a config file path, a dict in either shape, or a WorkflowConfig.

    `overrides` replace top-level keys of the flat form (e.g. output_dir from a CLI flag). A
    config that names Python to run is refused unless `allow_user_code` (or the config's own
    allow_user_code) says yes.
    """
    from olivepress.evaluate.user_code import require_permission

    if isinstance(source, WorkflowConfig):
        source = source.model_dump(exclude_unset=True)
    raw = read_config_file(Path(source)) if isinstance(source, str | Path) else source
    flat = {**normalize_workflow(raw), **(overrides or {})}
    # Before validation: the config's Python must not even be named to a validator unasked.
    require_permission(user_code_references(flat), allow_user_code or flat.get("allow_user_code") is True)
    try:
        config = WorkflowConfig.model_validate(flat)
    except ValidationError as exc:
        raise explain(exc, WorkflowConfig) from None
    device, provider = _target(config)
    planned = {name: _plan_pass(name, spec) for name, spec in config.passes.items()}
    evaluator = _evaluator(config)
    if evaluator is not None and not config.evaluate_input_model:
        relative = [
            f"{m.name}.{sub.name}"
            for m in evaluator.metrics
            for sub in m.sub_types
            if sub.goal is not None and sub.goal.type != "threshold"
        ]
        if relative:
            raise OlivepressError(
                f"goal of {relative[0]} is relative to the input model, but evaluate_input_model is false; "
                "set evaluate_input_model true or use a threshold goal"
            )
    search = config.search_strategy or None
    _check_search(config, planned, evaluator, search)
    return Workflow(
        config=config,
        flows=_flows(config, planned),
        device=device,
        execution_provider=provider,
        evaluator=evaluator,
        search=search,
        objectives=_objectives(evaluator, search),
        host=config.systems[config.host] if config.host else None,
    )


def _plan_pass(name: str, raw: dict[str, Any]) -> PlannedPass:
    if "type" not in raw:
        raise OlivepressError(
            f"pass '{name}' has no 'type'; say which pass it is, e.g. \"type\": \"ModelBuilder\""
        )
    # "type": ["RTN", "AWQ"] searches over passes: the other options must suit each of them.
    types = raw["type"] if isinstance(raw["type"], list) else [raw["type"]]
    if not types:
        raise OlivepressError(f"passes.{name}.type lists no pass; name one, or several to search over")
    for kind in types:
        check_pass_type(str(kind))
    specs = [find_pass(str(kind)) for kind in types]
    where = f"passes.{name}"
    planned = [
        _plan_one(
            where if len(specs) == 1 else f"{where} ({spec.name})",
            name,
            spec,
            {k: v for k, v in raw.items() if k != "type"},
        )
        for spec in specs
    ]
    if len(specs) == 1:
        return planned[0]
    if len({tuple(p.choices) for p in planned}) > 1:
        raise OlivepressError(
            f"passes.{name}: each pass type in the search must take the same searched options"
        )
    return replace(planned[0], choices={TYPE: [spec.name for spec in specs], **planned[0].choices})


def _plan_one(where: str, name: str, spec: PassSpec, raw_options: dict[str, Any]) -> PlannedPass:
    config_cls: type[PassConfig] = spec.module.Config
    raw_options = apply_option_treatments(spec.name, config_cls, raw_options, where)
    options, choices = split_options(where, spec.name, config_cls, raw_options)
    try:
        config = config_cls.model_validate({**options, **{key: values[0] for key, values in choices.items()}})
        for key, values in choices.items():  # every choice must be a value the option takes
            for value in values[1:]:
                config_cls.model_validate({**options, **{k: v[0] for k, v in choices.items()}, key: value})
    except ValidationError as exc:
        raise explain(exc, config_cls, where=where) from None
    return PlannedPass(name=name, spec=spec, config=config, options=options, choices=choices)


def _evaluator(config: WorkflowConfig) -> EvaluatorConfig | None:
    ref = config.evaluator
    if ref is None or isinstance(ref, EvaluatorConfig):
        return ref
    if ref not in config.evaluators:
        known = ", ".join(config.evaluators) or "none"
        raise OlivepressError(
            f"evaluator '{ref}' is not defined under evaluators{did_you_mean(ref, config.evaluators)} "
            f"(defined: {known})"
        )
    return config.evaluators[ref]


def _check_search(
    config: WorkflowConfig,
    planned: dict[str, PlannedPass],
    evaluator: EvaluatorConfig | None,
    search: SearchStrategyConfig | None,
) -> None:
    searched = [(p.name, key, values) for p in planned.values() for key, values in p.choices.items()]
    if searched and search is None:
        name, key, values = searched[0]
        raise OlivepressError(
            f"passes.{name}.{key} lists choices {values} but search_strategy is {config.search_strategy}; "
            "add a search_strategy to try them (and an evaluator to compare them), or give one value"
        )
    if search is not None and evaluator is None:
        raise OlivepressError(
            'search_strategy compares candidates, which needs an evaluator; add "evaluator" (metrics '
            "with goals)"
        )


def _objectives(evaluator: EvaluatorConfig | None, search: SearchStrategyConfig | None) -> list[Objective]:
    """The search's objectives in priority order: those written, else sub-types with a priority."""
    if evaluator is None or search is None:
        return []
    if search.objectives:
        ranked = sorted(enumerate(search.objectives), key=lambda item: item[1].priority or 10**6 + item[0])
        objectives = []
        for _, objective in ranked:
            metric, sub = evaluator.find(objective.metric)
            higher = (
                objective.higher_is_better
                if objective.higher_is_better is not None
                else metric.higher_is_better(sub)
            )
            objectives.append(Objective(metric=f"{metric.name}.{sub.name}", higher_is_better=higher))
        return objectives
    prioritised = sorted(
        (sub.priority, f"{metric.name}.{sub.name}", metric.higher_is_better(sub))
        for metric in evaluator.metrics
        for sub in metric.resolved_sub_types()
        if sub.priority is not None
    )
    if not prioritised:
        raise OlivepressError(
            "search_strategy has no objective: name one in search_strategy.objectives "
            '(e.g. ["speed.decode_tokens_per_s"]) or give a metric sub-type a priority'
        )
    return [Objective(metric=name, higher_is_better=higher) for _, name, higher in prioritised]


def _flows(config: WorkflowConfig, planned: dict[str, PlannedPass]) -> list[list[PlannedPass]]:
    if not config.pass_flows:
        return [list(planned.values())]
    flows = []
    for flow in config.pass_flows:
        for name in flow:
            if name not in planned:
                raise OlivepressError(
                    f"pass_flows names pass '{name}', which is not under passes{did_you_mean(name, planned)}"
                )
        flows.append([planned[name] for name in flow])
    return flows


def _target(config: WorkflowConfig) -> tuple[str, str]:
    """The device and execution provider the workflow optimises for."""
    for role in ("host", "target"):
        ref = getattr(config, role)
        if ref is not None and ref not in config.systems:
            raise OlivepressError(
                f"{role} '{ref}' is not defined under systems{did_you_mean(ref, config.systems)}"
            )
    device, providers = "cpu", None
    target = config.systems.get(config.target or "") if config.target else None
    if target is None and len(config.systems) == 1:
        target = next(iter(config.systems.values()))
    if target is not None and target.accelerators:
        device = target.accelerators[0].device
        providers = target.accelerators[0].execution_providers
    providers = config.execution_providers or providers
    provider = providers[0] if providers else default_provider(device)
    return device, provider

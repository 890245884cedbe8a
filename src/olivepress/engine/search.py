"""The search: sample points of a flow's search space, evaluate each candidate, keep the best.

A point sets every searched option of the flow ('pass.option' -> value). Candidates run
through the pass cache, so those that share a prefix of passes share its work, and a re-run
costs only evaluation. The best candidate meets every goal, then wins on the objectives in
priority order; the Pareto front is over the objectives and the goal metrics together.

Candidates are evaluated in batches (a host with several slots, e.g. a Ray cluster, runs a
batch at once): a grid is one batch; optuna's samplers ask for as many points as the host has
slots, then learn from them all (TPE with its constant-liar option for the points in flight).
A candidate that failed (only a Ray host returns one) has an error and no metrics: it is kept
in the record, never chosen, and optuna is told the trial failed.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from olivepress.engine.footprint import FootprintNode
from olivepress.errors import OlivepressError
from olivepress.evaluate.config import EvaluatorConfig, Goal
from olivepress.evaluate.evaluator import MetricValue
from olivepress.evaluate.goals import describe_goal, goal_bound, goal_met
from olivepress.models.handles import ModelHandle
from olivepress.workflow.load import PlannedPass
from olivepress.workflow.search_config import Objective, SearchStrategyConfig

log = logging.getLogger("olivepress")

Point = dict[str, Any]


@dataclass
class Candidate:
    index: int
    point: Point
    model: ModelHandle
    nodes: list[FootprintNode]
    metrics: dict[str, MetricValue]
    goals: dict[str, bool] = field(default_factory=dict)
    pareto: bool = False
    error: str | None = None  # why the candidate has no model (it failed, also on its retry)
    worker: dict[str, Any] = field(default_factory=dict)  # on Ray: the node and pid that built it

    @property
    def meets_goals(self) -> bool:
        return self.error is None and all(self.goals.values())

    @property
    def model_id(self) -> str | None:
        return self.nodes[-1].model_id if self.nodes else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "point": self.point,
            "model_id": self.model_id,
            "meets_goals": self.meets_goals,
            "goals": self.goals,
            "pareto": self.pareto,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "passes": [
                {"name": n.pass_name, "from_cache": n.from_cache, "duration_s": n.duration_s}
                for n in self.nodes
            ],
            "error": self.error,
            "worker": self.worker,
        }


@dataclass(frozen=True)
class GoalSpec:
    metric: str
    goal: Goal
    higher_is_better: bool


def goal_specs(evaluator: EvaluatorConfig) -> list[GoalSpec]:
    return [
        GoalSpec(f"{m.name}.{s.name}", s.goal, m.higher_is_better(s))
        for m in evaluator.metrics
        for s in m.resolved_sub_types()
        if s.goal is not None
    ]


def check_goals(
    metrics: dict[str, MetricValue], goals: list[GoalSpec], baseline: dict[str, MetricValue]
) -> dict[str, bool]:
    return {
        g.metric: goal_met(g.goal, metrics[g.metric].value, _base(baseline, g.metric), g.higher_is_better)
        for g in goals
    }


def describe_goals(goals: list[GoalSpec], baseline: dict[str, MetricValue]) -> dict[str, str]:
    return {g.metric: describe_goal(g.goal, _base(baseline, g.metric), g.higher_is_better) for g in goals}


def _base(baseline: dict[str, MetricValue], metric: str) -> float | None:
    return baseline[metric].value if metric in baseline else None


def dimensions(flow: list[PlannedPass]) -> dict[str, list[Any]]:
    return {f"{p.name}.{key}": values for p in flow for key, values in p.choices.items()}


def flow_at(flow: list[PlannedPass], point: Point) -> list[PlannedPass]:
    """The flow with its searched options set as `point` says."""
    return [
        p.with_values({key: point[f"{p.name}.{key}"] for key in p.choices if f"{p.name}.{key}" in point})
        if p.choices
        else p
        for p in flow
    ]


EvaluatePoints = Callable[[list[Point]], list[Candidate]]
RunBatch = Callable[[list[Point]], list[Candidate]]


def _point_key(point: Point) -> str:
    return repr(sorted(point.items()))


def search(
    flow: list[PlannedPass],
    strategy: SearchStrategyConfig,
    objectives: list[Objective],
    goals: list[GoalSpec],
    baseline: dict[str, MetricValue],
    evaluate_points: EvaluatePoints,
    slots: int = 1,
) -> list[Candidate]:
    """Evaluate candidates of `flow` as the strategy says; every candidate, in the order asked.

    `evaluate_points` evaluates a batch of points (at once where it can); `slots` is how many
    candidates the host runs at once, the batch size of the samplers that learn as they go.
    """
    dims = dimensions(flow)
    seen: dict[str, Candidate] = {}

    def run(points: list[Point]) -> list[Candidate]:
        fresh = list({_point_key(p): p for p in points if _point_key(p) not in seen}.values())
        for number, point in enumerate(fresh, start=len(seen) + 1):
            options = ", ".join(f"{k}={v}" for k, v in point.items()) or "(no options searched)"
            log.info("Candidate %d: %s", number, options)
        for point, candidate in zip(fresh, evaluate_points(fresh) if fresh else [], strict=True):
            seen[_point_key(point)] = candidate
        return [seen[_point_key(p)] for p in points]

    if strategy.execution_order == "joint" or not dims:
        _sample(dims, strategy, objectives, goals, baseline, run, slots, fixed={})
    else:
        fixed: Point = {}
        for planned in flow:
            own = {f"{planned.name}.{key}": values for key, values in planned.choices.items()}
            if not own:
                continue
            later = {k: v[0] for k, v in dims.items() if k not in own and k not in fixed}
            tried = _sample(own, strategy, objectives, goals, baseline, run, slots, fixed={**fixed, **later})
            best = choose(tried, objectives)
            fixed.update({k: best.point[k] for k in own})
            log.info("pass-by-pass: %s fixed at %s", planned.name, {k: best.point[k] for k in own})
    candidates = list(seen.values())
    for index, candidate in enumerate(candidates, start=1):
        candidate.index = index
    mark_pareto(candidates, objectives, goals)
    return candidates


def _sample(
    dims: dict[str, list[Any]],
    strategy: SearchStrategyConfig,
    objectives: list[Objective],
    goals: list[GoalSpec],
    baseline: dict[str, MetricValue],
    run: RunBatch,
    slots: int,
    fixed: Point,
) -> list[Candidate]:
    grid = [dict(zip(dims, values, strict=True)) for values in itertools.product(*dims.values())]
    budget = min(strategy.max_samples or len(grid), len(grid))
    if strategy.sampler == "sequential" or len(grid) <= 1:
        return run([{**fixed, **point} for point in grid[:budget]])
    return _optuna(dims, strategy, objectives, goals, baseline, budget, run, slots, fixed)


def _optuna(
    dims: dict[str, list[Any]],
    strategy: SearchStrategyConfig,
    objectives: list[Objective],
    goals: list[GoalSpec],
    baseline: dict[str, MetricValue],
    budget: int,
    run: RunBatch,
    slots: int,
    fixed: Point,
) -> list[Candidate]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if strategy.sampler == "tpe":
        # Few candidates in all: start modelling after 2 random ones rather than optuna's 10.
        # With several in flight, TPE counts those as scoring the worst seen so far (constant liar),
        # so a batch spreads out instead of asking the same point again.
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
            seed=strategy.seed, n_startup_trials=min(2, budget), constant_liar=slots > 1
        )
    else:
        sampler = optuna.samplers.RandomSampler(seed=strategy.seed)
    study = optuna.create_study(
        directions=["maximize" if o.higher_is_better else "minimize" for o in objectives], sampler=sampler
    )
    distributions = {
        name: optuna.distributions.CategoricalDistribution(values) for name, values in dims.items()
    }
    tried: dict[str, Candidate] = {}
    draws = 0
    while len(tried) < budget and draws < budget * 20:  # samplers repeat points; a repeat costs a draw
        trials = [study.ask(distributions) for _ in range(min(slots, budget - len(tried)))]
        draws += len(trials)
        points = [{name: trial.params[name] for name in dims} for trial in trials]
        candidates = run([{**fixed, **p} for p in points])
        for trial, point, candidate in zip(trials, points, candidates, strict=True):
            tried[_point_key(point)] = candidate
            if candidate.error is not None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            for goal in goals:  # a missed goal makes the trial infeasible for optuna's constrained TPE
                trial.set_constraint(goal.metric, _violation(candidate, goal, baseline))
            study.tell(trial, [candidate.metrics[o.metric].value for o in objectives])
    return list(tried.values())


def _violation(candidate: Candidate, goal: GoalSpec, baseline: dict[str, MetricValue]) -> float:
    """How far the candidate misses the goal (<= 0: met), for optuna's constrained sampling."""
    bound = goal_bound(goal.goal, _base(baseline, goal.metric), goal.higher_is_better)
    value = candidate.metrics[goal.metric].value
    return bound - value if goal.higher_is_better else value - bound


def _rank_key(candidate: Candidate, objectives: list[Objective]) -> tuple[Any, ...]:
    return (
        not candidate.meets_goals,
        *(
            -candidate.metrics[o.metric].value if o.higher_is_better else candidate.metrics[o.metric].value
            for o in objectives
        ),
        candidate.index,
    )


def choose(candidates: list[Candidate], objectives: list[Objective]) -> Candidate:
    """Goals met first, then the objectives in priority order; a failed candidate never."""
    measured = [c for c in candidates if c.error is None]
    if not measured:
        raise OlivepressError(
            f"every one of the {len(candidates)} candidate(s) failed (the first: {candidates[0].error}); "
            "fix that and run again (finished passes are cached)"
        )
    return min(measured, key=lambda c: _rank_key(c, objectives))


def explain_choice(
    chosen: Candidate, candidates: list[Candidate], objectives: list[Objective], goal_text: dict[str, str]
) -> str:
    met = [c for c in candidates if c.meets_goals]
    best_at = ", ".join(
        (
            f"{o.metric} = {chosen.metrics[o.metric].value:.4g} "
            f"({'higher' if o.higher_is_better else 'lower'} is better)"
        )
        for o in objectives
    )
    goals = "; ".join(f"{name} {text}" for name, text in goal_text.items())
    if not objectives:  # no search: the flow's one result
        if not goal_text:
            return "the flow's result (no search)"
        verdict = "it meets every goal" if chosen.meets_goals else "NO candidate meets every goal"
        return f"the flow's result (no search); {verdict} ({goals})"
    if not goal_text:
        why = f"best on {best_at} of {len(candidates)} candidate(s)"
    elif chosen.meets_goals:
        why = (
            f"meets every goal ({goals}); {len(met)} of {len(candidates)} candidate(s) do, and this one is "
            f"best on {best_at}"
        )
    else:
        why = (
            f"NO candidate meets every goal ({goals}); this one is the best on {best_at} among all "
            f"{len(candidates)}"
        )
    return (
        f"candidate {chosen.index} "
        f"({', '.join(f'{k}={v}' for k, v in chosen.point.items()) or 'no options searched'}): {why}"
    )


def mark_pareto(candidates: list[Candidate], objectives: list[Objective], goals: list[GoalSpec]) -> None:
    """Mark the candidates no other candidate beats on every tracked metric."""
    tracked = {o.metric: o.higher_is_better for o in objectives} | {
        g.metric: g.higher_is_better for g in goals
    }

    def scores(c: Candidate) -> list[float]:
        return [c.metrics[m].value if higher else -c.metrics[m].value for m, higher in tracked.items()]

    measured = [c for c in candidates if c.error is None]
    for candidate in measured:
        mine = scores(candidate)
        candidate.pareto = not any(
            all(o >= m for o, m in zip(other_scores, mine, strict=True)) and other_scores != mine
            for other_scores in (scores(other) for other in measured if other is not candidate)
        )

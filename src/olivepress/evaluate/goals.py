"""Goals: the bar a sub-metric must clear, absolute or relative to the input model's value.

For a metric where higher is better (lower is better mirrors it):

    threshold                 value >= v
    min-improvement           value >= input + v
    max-degradation           value >= input - v
    percent-min-improvement   value >= input * (1 + v/100)
    percent-max-degradation   value >= input * (1 - v/100)
"""

from __future__ import annotations

from olivepress.errors import OlivepressError
from olivepress.evaluate.config import Goal


def goal_bound(goal: Goal, baseline: float | None, higher_is_better: bool) -> float:
    """The worst value that still meets the goal."""
    if goal.type == "threshold":
        return goal.value
    if baseline is None:
        raise OlivepressError(
            f"goal '{goal.type}' is relative to the input model, whose value is not known; evaluate "
            "the input model"
        )
    sign = 1 if higher_is_better else -1
    change = {
        "min-improvement": sign * goal.value,
        "max-degradation": -sign * goal.value,
        "percent-min-improvement": sign * abs(baseline) * goal.value / 100,
        "percent-max-degradation": -sign * abs(baseline) * goal.value / 100,
    }[goal.type]
    return baseline + change


def goal_met(goal: Goal, value: float, baseline: float | None, higher_is_better: bool) -> bool:
    bound = goal_bound(goal, baseline, higher_is_better)
    return value >= bound if higher_is_better else value <= bound


def describe_goal(goal: Goal, baseline: float | None, higher_is_better: bool) -> str:
    """'<= 14.52 (input 13.20, at most 10% worse)'."""
    bound = goal_bound(goal, baseline, higher_is_better)
    op = ">=" if higher_is_better else "<="
    unit = "%" if goal.type.startswith("percent") else ""
    why = {
        "threshold": "threshold",
        "min-improvement": f"at least {goal.value:g}{unit} better",
        "max-degradation": f"at most {goal.value:g}{unit} worse",
        "percent-min-improvement": f"at least {goal.value:g}{unit} better",
        "percent-max-degradation": f"at most {goal.value:g}{unit} worse",
    }[goal.type]
    base = f"input {baseline:.4g}, " if baseline is not None and goal.type != "threshold" else ""
    return f"{op} {bound:.4g} ({base}{why})"

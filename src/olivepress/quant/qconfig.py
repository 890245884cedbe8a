"""The `quantization_config` of a quantized checkpoint: AutoAWQ's, or GPTQ's with GPTQModel's
per-module `dynamic` overrides, from the plan and the options."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from olivepress.quant.grid import QuantizedWeight
    from olivepress.quant.options import QuantOptions
    from olivepress.quant.plan import QuantPlan


def quantization_config(
    plan: QuantPlan,
    options: QuantOptions,
    quantized: dict[str, QuantizedWeight],
    *,
    meta: dict[str, Any],
    desc_act: bool = False,
    damp_percent: float = 0.0,
) -> dict[str, Any]:
    """The config for `plan.layout`; `meta` records how the checkpoint was made."""
    if plan.layout == "awq":
        # the user's name fragments, plus the exact names that overrides left float
        skipped = [n for n in plan.float_linears if not any(k in n for k in options.modules_to_not_convert)]
        return awq_config(
            group_size=plan.group_size or options.group_size,
            modules_to_not_convert=[*options.modules_to_not_convert, *skipped],
            meta=meta,
        )
    sym_of = {name: grid.sym for name, grid in plan.grids.items()}
    return gptq_config(
        bits=options.bits,
        group_size=options.group_size,
        sym=options.symmetric,
        desc_act=desc_act,
        damp_percent=damp_percent,
        dynamic=gptq_dynamic(
            quantized, plan.float_linears, options.bits, options.group_size, options.symmetric, sym_of
        ),
        lm_head="lm_head" in quantized,
        meta=meta,
    )


def awq_config(*, group_size: int, modules_to_not_convert: list[str], meta: dict[str, Any]) -> dict[str, Any]:
    # Symmetric grids are stored with z = 8, so the layout always carries zero points.
    return {
        "quant_method": "awq",
        "bits": 4,
        "group_size": group_size,
        "zero_point": True,
        "version": "gemm",
        "modules_to_not_convert": modules_to_not_convert or None,
        "meta": meta,
    }


def gptq_config(
    *,
    bits: int,
    group_size: int,
    sym: bool,
    desc_act: bool,
    damp_percent: float,
    dynamic: dict[str, dict[str, Any]],
    lm_head: bool,
    meta: dict[str, Any],
) -> dict[str, Any]:
    return {
        "quant_method": "gptq",
        "checkpoint_format": "gptq",
        "bits": bits,
        "group_size": group_size,
        "sym": sym,
        "desc_act": desc_act,
        "damp_percent": damp_percent,
        "true_sequential": False,
        "static_groups": False,
        "lm_head": lm_head,
        "dynamic": dynamic or None,
        "meta": meta,
    }


def _name_pattern(name: str) -> str:
    # `\b` instead of `$`: GPTQModel matches module names, the ORT GenAI builder matches
    # tensor names ("...q_proj.qweight"); re.match with a word boundary serves both.
    return re.escape(name) + r"\b"


def _generalise(names: list[str], all_names: list[str]) -> list[str]:
    """Patterns covering `names`: one per module kind with the layer index as \\d+ where every
    layer's module of that kind is in `names`, the exact name otherwise."""
    chosen = set(names)
    by_kind: dict[str, list[str]] = {}
    for name in names:
        by_kind.setdefault(re.sub(r"\.\d+\.", ".#.", name, count=1), []).append(name)
    patterns = []
    for kind, members in by_kind.items():
        siblings = [n for n in all_names if re.sub(r"\.\d+\.", ".#.", n, count=1) == kind]
        if "#" in kind and set(siblings) <= chosen and len(members) > 1:
            patterns.append(r"\.".join(r"\d+" if p == "#" else re.escape(p) for p in kind.split(".")) + r"\b")
        else:
            patterns.extend(_name_pattern(n) for n in members)
    return patterns


def gptq_dynamic(
    quantized: dict[str, QuantizedWeight],
    float_linears: list[str],
    bits: int,
    group_size: int,
    sym: bool,
    sym_of: dict[str, bool],
) -> dict[str, dict[str, Any]]:
    """GPTQModel's per-module overrides: `+:pattern` -> settings that differ from the global
    ones, `-:pattern` -> a module left in float."""
    groups: dict[tuple, list[str]] = {}
    for name, q in quantized.items():
        key = (q.bits, q.group_size, sym_of.get(name, sym))
        if key != (bits, group_size, sym):
            groups.setdefault(key, []).append(name)
    dynamic: dict[str, dict[str, Any]] = {}
    all_names = list(quantized) + list(float_linears)
    for (b, g, s), names in groups.items():
        for pattern in _generalise(names, all_names):
            dynamic["+:" + pattern] = {"bits": b, "group_size": g, "sym": s}
    for pattern in _generalise(float_linears, all_names):
        dynamic["-:" + pattern] = {}
    return dynamic

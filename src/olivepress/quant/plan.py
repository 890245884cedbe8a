"""The plan of a quantization: which Linear layer gets which grid, which stay float, and the
checkpoint layout that can hold them all (AWQ when it can, else GPTQ)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from olivepress.errors import OlivepressError
from olivepress.quant.decoder import decoder_layers
from olivepress.quant.grid import Grid
from olivepress.quant.layout import awq_problem, gptq_problem, largest_fitting_group, ragged_message
from olivepress.quant.options import QuantOptions, find_override

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel


@dataclass
class QuantPlan:
    grids: dict[str, Grid]  # module name -> grid, for every Linear to quantize
    float_linears: list[str]  # Linear layers left in float (not lm_head unless asked)
    layout: str  # "awq" or "gptq"
    layout_reason: str = ""
    notes: list[str] = field(default_factory=list)
    group_size: int | None = None  # the AWQ layout's one group size, where it differs from the option's


def plan_quantization(
    model: PreTrainedModel, options: QuantOptions, *, layouts: tuple[str, ...]
) -> QuantPlan:
    """Which Linear layers get which grid, and the checkpoint layout that can hold them all.

    When lm_head is quantized and tied to the embeddings, it gets its own copy of the weights
    (the embeddings stay float)."""
    from torch import nn

    _, prefix = decoder_layers(model)
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.startswith(prefix + ".")
    ]
    lm_head = model.get_output_embeddings()
    if options.include_lm_head and isinstance(lm_head, nn.Linear):
        candidates.append(("lm_head", lm_head))

    grids: dict[str, Grid] = {}
    float_linears: list[str] = []
    notes: list[str] = []
    module_names = {name for name, _ in model.named_modules()}
    for name, module in candidates:
        override = find_override(options.overrides, name, module_names)
        if override.skip or any(key in name for key in options.modules_to_not_convert):
            float_linears.append(name)
            continue
        bits = override.bits or options.bits
        group_size = override.group_size or options.group_size
        sym = options.symmetric if override.sym is None else override.sym
        in_features = module.in_features
        if group_size != -1 and in_features % group_size:
            if options.ragged_groups == "error":
                raise OlivepressError(
                    f"{ragged_message(name, in_features, group_size)} "
                    "(or set ragged_groups to smaller_group / short_last_group)"
                )
            smaller = largest_fitting_group(in_features, group_size)
            if options.ragged_groups == "smaller_group" and smaller is not None:
                notes.append(f"in_features {in_features}: group size {smaller} instead of {group_size}")
                group_size = smaller
        grids[name] = Grid(bits=bits, group_size=group_size, sym=sym)

    if not grids:
        raise OlivepressError(
            "no Linear layer is left to quantize; check modules_to_not_convert and overrides"
        )
    layout_group_size = options.group_size
    if notes and _one_group_for_awq(options, layouts):
        # The AWQ layout holds one group size: the smallest of the fitting ones fits every layer
        # (powers of two), so the checkpoint stays AutoAWQ rather than GPTQ with per-module groups.
        layout_group_size = min(grid.group_size for grid in grids.values())
        grids = {name: replace(grid, group_size=layout_group_size) for name, grid in grids.items()}
        notes = [
            f"group size {layout_group_size} for every layer, the largest that fits them all in the AWQ "
            f"layout (one group size; {notes[0].split(':')[0]} is not a multiple of {options.group_size}); "
            "layout gptq keeps the larger group where it fits"
        ]
    if "lm_head" in grids and lm_head.weight is model.get_input_embeddings().weight:
        lm_head.weight = nn.Parameter(lm_head.weight.detach().clone())
        model.config.tie_word_embeddings = False
    layout, reason = _choose_layout(dict(model.named_modules()), options, grids, layouts, layout_group_size)
    group_size = layout_group_size if layout == "awq" and layout_group_size != options.group_size else None
    return QuantPlan(grids, float_linears, layout, reason, sorted(set(notes)), group_size)


def _one_group_for_awq(options: QuantOptions, layouts: tuple[str, ...]) -> bool:
    """Whether ragged layers should all take one smaller group so the AWQ layout can hold them:
    the AWQ layout is wanted and allowed, and no override asks for a group size of its own."""
    return (
        options.ragged_groups == "smaller_group"
        and options.bits == 4
        and options.layout in ("auto", "awq")
        and "awq" in layouts
        and not any(override.group_size for override in options.overrides.values())
    )


def _choose_layout(
    modules: dict[str, nn.Module],
    options: QuantOptions,
    grids: dict[str, Grid],
    layouts: tuple[str, ...],
    layout_group_size: int,
) -> tuple[str, str]:
    if options.layout not in ("auto", *layouts):
        raise OlivepressError(
            f"this quantizer writes the {' or '.join(layouts)} layout, not '{options.layout}'"
        )
    problem = ""
    if options.layout in ("auto", "awq") and "awq" in layouts:
        problem = next(
            filter(None, (_awq_problem(n, g, modules[n], layout_group_size) for n, g in grids.items())), ""
        )
        if not problem:
            return "awq", ""
        if options.layout == "awq":
            raise OlivepressError(
                f"cannot write the AWQ layout: {problem}; use layout 'gptq' or another group_size"
            )
        if "gptq" not in layouts:
            raise OlivepressError(f"cannot write the AWQ layout: {problem}")
    for name, grid in grids.items():
        linear = modules[name]
        gptq = gptq_problem(
            name, bits=grid.bits, in_features=linear.in_features, out_features=linear.out_features
        )
        if gptq:
            raise OlivepressError(
                f"cannot write the GPTQ layout: {gptq}; leave it in float with modules_to_not_convert"
            )
    return "gptq", problem


def _awq_problem(name: str, grid: Grid, linear: nn.Module, layout_group_size: int) -> str | None:
    return awq_problem(
        name,
        bits=grid.bits,
        group_size=grid.group_size,
        in_features=linear.in_features,
        out_features=linear.out_features,
        layout_group_size=layout_group_size,
    )


def describe_plan(plan: QuantPlan, log: Any, algorithm: str) -> None:
    """Log the plan: how many layers get which grid, the layout and why, what stays float."""
    counts: dict[Grid, int] = {}
    for grid in plan.grids.values():
        counts[grid] = counts.get(grid, 0) + 1
    summary = ", ".join(
        f"{n} x {g.bits}-bit g{g.group_size}{' sym' if g.sym else ''}"
        for g, n in sorted(counts.items(), key=lambda x: -x[1])
    )
    log.info("%s: %s; %s layout", algorithm, summary, plan.layout.upper())
    if plan.layout_reason:
        log.info("%s: GPTQ layout because %s", algorithm, plan.layout_reason)
    for note in plan.notes:
        log.info("%s: %s", algorithm, note)
    in_layers = [n for n in plan.float_linears if n != "lm_head"]
    if plan.float_linears:
        log.info("%s: %d Linear layers stay float", algorithm, len(plan.float_linears))
    if in_layers:
        # onnxruntime-genai 0.18's quantized-model loader reads every decoder-layer Linear as packed
        log.warning(
            "%s: the ORT GenAI model builder cannot read a checkpoint whose decoder layers keep float Linear "
            "layers (%s, ...); export it through the float model instead",
            algorithm,
            in_layers[0],
        )

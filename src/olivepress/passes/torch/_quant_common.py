"""What the RTN, AWQ and GPTQ passes share: their options, the plan (which Linear gets which
grid, which checkpoint layout), calibration inputs, the walk over decoder layers, and writing
the checkpoint.

The walk keeps memory near one decoder layer's activations: the calibration tokens run
through the embeddings once, up to decoder layer 0, and from there each layer is quantized
and then run (quantized) on its inputs to give the next layer's inputs.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from olivepress.cpu import available_cores, free_cores
from olivepress.data.config import DataConfig
from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel
from olivepress.passes.base import PassConfig, PassContext
from olivepress.quant.grid import Grid

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedModel

    from olivepress.quant.grid import QuantizedWeight

PACKABLE_BITS = (2, 4, 8)


class ModuleOverride(BaseModel):
    """Settings for the Linear layers whose name matches a pattern (re.search)."""

    model_config = ConfigDict(extra="forbid")

    bits: int | None = None
    group_size: int | None = None
    sym: bool | None = None
    skip: bool = Field(False, description="Leave the matching layers in float.")

    @model_validator(mode="before")
    @classmethod
    def _olive_symmetric(cls, data: Any) -> Any:
        # Olive spells sym `symmetric` in overrides.
        if isinstance(data, dict) and "symmetric" in data:
            data = dict(data)
            value = data.pop("symmetric")
            if data.get("sym") not in (None, value):
                raise ValueError("symmetric and sym contradict each other; set only one of them")
            data["sym"] = value
        return data


def find_override(overrides: dict[str, ModuleOverride], name: str, module_names: set[str]) -> ModuleOverride:
    """The override for module `name`. A key that is a module's exact name applies to that module
    only (Olive's literal keys); 're:<regex>' must match the whole name (Olive's patterns); any
    other key is a regex searched in the name."""
    if name in overrides:
        return overrides[name]
    for key, override in overrides.items():
        if key in module_names:
            continue
        if key.startswith("re:"):
            if re.fullmatch(key[3:], name):
                return override
        elif re.search(key, name):
            return override
    return ModuleOverride()


def _check_bits(bits: int) -> int:
    if bits not in PACKABLE_BITS:
        raise ValueError(f"bits={bits} cannot be packed into the AWQ/GPTQ layouts; use 4 or 8 (2 also packs)")
    return bits


def _check_group_size(group_size: int) -> int:
    # MatMulNBits (what the ORT GenAI builder emits) takes power-of-two blocks of 16 or more.
    if group_size != -1 and (group_size < 16 or group_size & (group_size - 1)):
        raise ValueError(f"group_size={group_size} must be -1 (per output channel) or a power of two >= 16, e.g. 32, 64, 128")
    return group_size


class QuantPassConfig(PassConfig):
    """Options every quantizer takes. Defaults: 4-bit, groups of 128, with zero points."""

    bits: int = Field(4, description="Bits per weight: 4, or 8.")
    group_size: int = Field(128, description="Input columns per scale: 32, 64, 128, ... or -1 (one per row).")
    sym: bool | None = Field(None, description="Symmetric grid without zero points (default: false).")
    zero_point: bool | None = Field(None, description="AutoAWQ's spelling of `not sym`.")
    ragged_groups: Literal["smaller_group", "short_last_group", "error"] = Field(
        "smaller_group",
        description=(
            "A layer whose in_features is not a multiple of group_size: use the largest power-of-two group "
            "that divides it (every reader, the ORT GenAI builder included, takes it), keep group_size with a "
            "short last group (GPTQ layout; the ORT GenAI builder cannot read it), or stop with an error."
        ),
    )
    layout: Literal["auto", "awq", "gptq"] = Field(
        "auto", description="Checkpoint layout; auto: AWQ when it can hold every layer, else GPTQ."
    )
    # 16 x 256 = 4096 tokens: about all of the shipped calibration text, and what keeps AWQ on
    # SmolLM2 under a minute on two cores. Give more (and more data) for bigger models.
    num_calib_samples: int = Field(16, description="Calibration samples (token windows).")
    calib_seq_len: int = Field(256, description="Tokens per calibration sample.")
    data_config: str | DataConfig | None = Field(
        None, description="Calibration data (a data config or its name); none: the shipped calibration text."
    )
    seed: int = 0
    batch_size: int = Field(8, gt=0, description="Calibration samples run through a layer at once.")
    modules_to_not_convert: list[str] = Field(
        default_factory=list, description="Linear layers to leave in float (a name or part of one)."
    )
    include_lm_head: bool = Field(False, description="Quantize lm_head too (Olive: lm_head).")
    embeds: bool = Field(
        False,
        description=(
            "Quantize the token embeddings too (RTN): kept on the grid in the checkpoint and written as "
            "GatherBlockQuantized in the ONNX model (tied to lm_head's weights where the model ties them)."
        ),
    )
    overrides: dict[str, ModuleOverride] = Field(
        default_factory=dict, description="Per-module settings: a regex on the module name -> bits/group_size/sym/skip."
    )
    dtype: Literal["float16", "bfloat16", "float32"] = Field(
        "float16", description="dtype of the tensors that stay float (embeddings, norms)."
    )
    num_threads: int | None = Field(
        None, gt=0, description="CPU threads; default: the cores that other work is not keeping busy."
    )

    # Olive's (and AutoAWQ's) names for these options.
    OLIVE_ALIASES: ClassVar[dict[str, str]] = {"lm_head": "include_lm_head", "q_group_size": "group_size", "w_bit": "bits"}

    @model_validator(mode="before")
    @classmethod
    def _olive_names(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(key in data for key in cls.OLIVE_ALIASES):
            return data
        data = dict(data)
        for alias, name in cls.OLIVE_ALIASES.items():
            if alias in data:
                value = data.pop(alias)
                if name in data and data[name] != value:
                    raise ValueError(f"'{alias}' and '{name}' are the same option with different values; keep '{name}'")
                data[name] = value
        return data

    @field_validator("bits")
    @classmethod
    def _bits_pack(cls, bits: int) -> int:
        return _check_bits(bits)

    @field_validator("group_size")
    @classmethod
    def _group_size_fits_matmulnbits(cls, group_size: int) -> int:
        return _check_group_size(group_size)

    @model_validator(mode="after")
    def _sym_and_zero_point_agree(self) -> QuantPassConfig:
        if self.sym is not None and self.zero_point is not None and self.sym == self.zero_point:
            raise ValueError("sym and zero_point contradict each other; set only one of them")
        for pattern, override in self.overrides.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"overrides key '{pattern}' is not a valid regex: {exc}") from exc
            if override.bits is not None:
                _check_bits(override.bits)
            if override.group_size is not None:
                _check_group_size(override.group_size)
        return self

    @property
    def symmetric(self) -> bool:
        if self.sym is not None:
            return self.sym
        return self.zero_point is False


# --- the plan ---------------------------------------------------------------------------


@dataclass
class QuantPlan:
    grids: dict[str, Grid]  # module name -> grid, for every Linear to quantize
    float_linears: list[str]  # Linear layers left in float (not lm_head unless asked)
    layout: str  # "awq" or "gptq"
    layout_reason: str = ""
    notes: list[str] = field(default_factory=list)


def decoder_layers(model: PreTrainedModel) -> tuple[nn.ModuleList, str]:
    """The decoder layers and their name prefix ('model.layers' for Llama, Phi-3, Qwen, ...)."""
    from torch import nn

    n_layers = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers and name.count(".") <= 2:
            return module, name
    raise OlivepressError(
        f"cannot find the decoder layers of this {type(model).__name__}; olivepress quantizes decoder-only "
        "transformers whose layers sit in one ModuleList (Llama, Mistral, Phi-3, Qwen, ...)"
    )


def _largest_fitting_group(in_features: int, group_size: int) -> int | None:
    g = group_size
    while g >= 16:
        if in_features % g == 0:
            return g
        g //= 2
    return None


def plan_quantization(model: PreTrainedModel, config: QuantPassConfig, *, layouts: tuple[str, ...]) -> QuantPlan:
    """Which Linear layers get which grid, and the checkpoint layout that can hold them all."""
    from torch import nn

    _, prefix = decoder_layers(model)
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.startswith(prefix + ".")
    ]
    lm_head = model.get_output_embeddings()
    if config.include_lm_head and isinstance(lm_head, nn.Linear):
        candidates.append(("lm_head", lm_head))

    grids: dict[str, Grid] = {}
    float_linears: list[str] = []
    notes: list[str] = []
    module_names = {name for name, _ in model.named_modules()}
    for name, module in candidates:
        override = find_override(config.overrides, name, module_names)
        if override.skip or any(key in name for key in config.modules_to_not_convert):
            float_linears.append(name)
            continue
        bits = override.bits or config.bits
        group_size = override.group_size or config.group_size
        sym = config.symmetric if override.sym is None else override.sym
        in_features = module.in_features
        if group_size != -1 and in_features % group_size:
            fits = ", ".join(str(g) for g in _fitting(in_features))
            if config.ragged_groups == "error":
                raise OlivepressError(
                    f"{name} has in_features={in_features}, not a multiple of group_size={group_size}; "
                    f"group sizes that fit: {fits} (or set ragged_groups to smaller_group / short_last_group)"
                )
            smaller = _largest_fitting_group(in_features, group_size)
            if config.ragged_groups == "smaller_group" and smaller is not None:
                notes.append(f"in_features {in_features}: group size {smaller} instead of {group_size}")
                group_size = smaller
        grids[name] = Grid(bits=bits, group_size=group_size, sym=sym)

    if not grids:
        raise OlivepressError("no Linear layer is left to quantize; check modules_to_not_convert and overrides")
    if "lm_head" in grids and lm_head.weight is model.get_input_embeddings().weight:
        # A quantized lm_head gets its own weights; the embeddings stay float.
        lm_head.weight = nn.Parameter(lm_head.weight.detach().clone())
        model.config.tie_word_embeddings = False
    layout, reason = _choose_layout(model, config, grids, layouts)
    return QuantPlan(grids, float_linears, layout, reason, sorted(set(notes)))


def _fitting(in_features: int) -> list[int]:
    return [g for g in (256, 128, 64, 32, 16) if in_features % g == 0] + [-1]


def _awq_problem(model: PreTrainedModel, grids: dict[str, Grid], config: QuantPassConfig) -> str | None:
    """Why the AWQ GEMM layout cannot hold this plan, or None."""
    modules = dict(model.named_modules())
    for name, grid in grids.items():
        in_features, out_features = modules[name].in_features, modules[name].out_features
        if grid.bits != 4:
            return f"{name} is {grid.bits}-bit and the AWQ layout holds 4-bit weights only"
        if grid.group_size != config.group_size:
            return f"{name} needs group size {grid.group_size} and the AWQ layout has one group size for all layers"
        if grid.group_size != -1 and in_features % grid.group_size:
            fits = ", ".join(str(g) for g in _fitting(in_features))
            return (
                f"{name} has in_features={in_features}, not a multiple of group_size={grid.group_size}, and the "
                f"AWQ layout needs whole groups; group sizes that fit: {fits}"
            )
        if out_features % 8:
            return f"{name} has out_features={out_features}, not a multiple of 8"
    return None


def _choose_layout(
    model: PreTrainedModel, config: QuantPassConfig, grids: dict[str, Grid], layouts: tuple[str, ...]
) -> tuple[str, str]:
    modules = dict(model.named_modules())
    if config.layout not in ("auto", *layouts):
        raise OlivepressError(f"this quantizer writes the {' or '.join(layouts)} layout, not '{config.layout}'")
    if config.layout in ("auto", "awq") and "awq" in layouts:
        problem = _awq_problem(model, grids, config)
        if problem is None:
            return "awq", ""
        if config.layout == "awq":
            raise OlivepressError(f"cannot write the AWQ layout: {problem}; use layout 'gptq' or another group_size")
        if "gptq" not in layouts:
            raise OlivepressError(f"cannot write the AWQ layout: {problem}")
    else:
        problem = ""
    for name, grid in grids.items():
        per_word = 32 // grid.bits
        if modules[name].in_features % per_word or modules[name].out_features % per_word:
            raise OlivepressError(
                f"cannot write the GPTQ layout: {name} is {modules[name].out_features}x{modules[name].in_features}, "
                f"and {grid.bits}-bit packing needs both to be multiples of {per_word}; leave it in float "
                "with modules_to_not_convert"
            )
    return "gptq", problem or ""


# --- calibration ------------------------------------------------------------------------


def calibration_tokens(tokenizer: Any, config: QuantPassConfig, ctx: PassContext) -> torch.Tensor:
    from olivepress.data.calibration import calibration_samples

    if config.num_calib_samples < 1:
        raise OlivepressError(
            f"num_calib_samples is {config.num_calib_samples}; this quantizer needs calibration samples, "
            "give at least 1 (16 to 64 is usual)"
        )
    data_config = ctx.data_config(config.data_config) if config.data_config is not None else None
    tokens = calibration_samples(
        tokenizer, data_config, num_samples=config.num_calib_samples, seq_len=config.calib_seq_len, seed=config.seed
    )
    if tokens.numel() == 0:
        raise OlivepressError("the calibration data gave no tokens; check data_config or use the shipped text")
    return tokens


class _Stop(Exception):
    pass


@dataclass
class LayerInputs:
    """The calibration batches at the input of one decoder layer: hidden states and the
    keyword arguments (rotary embeddings, mask) the model passed to it."""

    hidden: list[torch.Tensor]
    kwargs: list[dict[str, Any]]

    @property
    def num_tokens(self) -> int:
        return sum(h.shape[0] * h.shape[1] for h in self.hidden)

    def run(self, layer: nn.Module, capture: list[str] | None = None) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """The layer's outputs for every batch and, for each named submodule, its inputs
        flattened to [tokens, features]. Submodules fed the very same tensor (q/k/v after
        one norm) get the same captured tensor object, so callers can share work by id()."""
        import torch

        captured: dict[str, list[torch.Tensor]] = {name: [] for name in capture or []}
        same_as: dict[str, str] = {}
        seen: dict[tuple, str] = {}  # (data_ptr, shape) of this batch's inputs -> first module

        def hook(_module: nn.Module, args: tuple, _out: torch.Tensor, name: str) -> None:
            x = args[0]
            key = (x.data_ptr(), tuple(x.shape))
            if key in seen and seen[key] != name:
                same_as[name] = seen[key]
                return
            seen[key] = name
            captured[name].append(x.reshape(-1, x.shape[-1]).float())

        modules = dict(layer.named_modules())
        handles = [
            modules[name].register_forward_hook(lambda m, a, o, name=name: hook(m, a, o, name)) for name in captured
        ]
        outputs = []
        try:
            with torch.no_grad():
                for hidden, kwargs in zip(self.hidden, self.kwargs, strict=True):
                    seen.clear()
                    out = layer(hidden, **kwargs)
                    outputs.append(out[0] if isinstance(out, tuple) else out)
        finally:
            for handle in handles:
                handle.remove()
        xs = {name: torch.cat(chunks) for name, chunks in captured.items() if name not in same_as}
        xs.update({name: xs[first] for name, first in same_as.items()})
        return outputs, xs


def first_layer_inputs(model: PreTrainedModel, tokens: torch.Tensor, batch_size: int) -> LayerInputs:
    """Run the calibration tokens up to decoder layer 0 and keep what it receives."""
    import torch

    layers, _ = decoder_layers(model)
    inputs = LayerInputs([], [])

    def grab(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs.pop("hidden_states")
        inputs.hidden.append(hidden.detach())
        inputs.kwargs.append({k: v for k, v in kwargs.items() if k != "hidden_states"})
        raise _Stop

    handle = layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in tokens.split(batch_size):
                with contextlib.suppress(_Stop):
                    model(input_ids=batch, use_cache=False)
    finally:
        handle.remove()
    return inputs


# The per-layer step of an algorithm: quantize the named Linear layers of one decoder layer
# in place (their weights become the dequantised grid) and return their quantized weights.
LayerQuantizer = Callable[["nn.Module", LayerInputs, dict[str, Grid]], dict[str, "QuantizedWeight"]]
HeadQuantizer = Callable[["PreTrainedModel", "torch.Tensor", Grid], "QuantizedWeight"]


def quantize_layer_by_layer(
    model: PreTrainedModel,
    tokens: torch.Tensor,
    plan: QuantPlan,
    quantize_layer: LayerQuantizer,
    quantize_head: HeadQuantizer,
    *,
    batch_size: int,
    log: Any,
    name: str,
) -> dict[str, QuantizedWeight]:
    import torch

    layers, prefix = decoder_layers(model)
    start = time.perf_counter()
    inputs = first_layer_inputs(model, tokens, batch_size)
    quantized: dict[str, QuantizedWeight] = {}
    for i, layer in enumerate(layers):
        layer_start = time.perf_counter()
        here = f"{prefix}.{i}."
        grids = {n.removeprefix(here): g for n, g in plan.grids.items() if n.startswith(here)}
        if grids:
            done = quantize_layer(layer, inputs, grids)
            quantized.update({here + n: q for n, q in done.items()})
        inputs.hidden, _ = inputs.run(layer)
        log.info(
            "%s: layer %d/%d quantized in %.1f s", name, i + 1, len(layers), time.perf_counter() - layer_start
        )
    if "lm_head" in plan.grids:
        norm = final_norm(model)
        with torch.no_grad():
            x = torch.cat([norm(h).reshape(-1, h.shape[-1]).float() for h in inputs.hidden])
        quantized["lm_head"] = quantize_head(model, x, plan.grids["lm_head"])
        log.info("%s: lm_head quantized", name)
    log.info("%s: %d layers in %.1f s", name, len(layers), time.perf_counter() - start)
    return quantized


def final_norm(model: PreTrainedModel) -> nn.Module:
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    for attr in ("norm", "final_layernorm", "ln_f"):
        if hasattr(base, attr):
            return getattr(base, attr)
    raise OlivepressError(f"cannot find the final norm of this {type(model).__name__}, so lm_head cannot be calibrated")


@contextlib.contextmanager
def compute_threads(requested: int | None, log: Any) -> Iterator[int]:
    """Run with `requested` torch threads, by default one per core that is not already busy.

    torch's OpenMP threads meet at a barrier after every op; when another process holds one of
    the cores, every op waits for the thread that got descheduled. AWQ on SmolLM2 with one of
    two cores busy: 334 s on two threads, 74 s on one.
    """
    import torch

    cores = available_cores()
    if requested is None:
        requested = free_cores()
    previous = torch.get_num_threads()
    torch.set_num_threads(requested)
    log.info("using %d of %d CPU threads", requested, cores)
    try:
        yield requested
    finally:
        torch.set_num_threads(previous)


# --- input and output -------------------------------------------------------------------


def load_float_model(model: HfModel, algorithm: str) -> tuple[PreTrainedModel, Any]:
    """The input as a float32 model and its tokenizer, refusing inputs this pass cannot take."""
    import torch

    from olivepress.models.loading import load_causal_lm, load_tokenizer

    method = model.quantization_method()
    if method is not None:
        raise OlivepressError(
            f"{model.path} is already quantized ('{method}'); {algorithm} needs the float model it was made from"
        )
    if model.adapter_path:
        raise OlivepressError(
            f"{model.path} comes with the adapter {model.adapter_path}; merge it first (MergeAdapterWeights) "
            f"so that {algorithm} quantizes the weights the model really uses"
        )
    lm = load_causal_lm(model, dtype=torch.float32)
    lm.eval()
    lm.config.use_cache = False
    return lm, load_tokenizer(model)


def write_checkpoint(
    lm: PreTrainedModel,
    quantized: dict[str, QuantizedWeight],
    source: HfModel,
    out_dir: Path,
    plan: QuantPlan,
    config: QuantPassConfig,
    *,
    algorithm: str,
    meta: dict[str, Any] | None = None,
    desc_act: bool = False,
    damp_percent: float = 0.0,
) -> HfModel:
    import torch

    from olivepress import __version__
    from olivepress.quant import checkpoint

    meta = {"quantizer": f"olivepress {__version__}", "algorithm": algorithm, **(meta or {})}
    if plan.layout == "awq":
        # the user's name fragments, plus the exact names that overrides left float
        skipped = [n for n in plan.float_linears if not any(k in n for k in config.modules_to_not_convert)]
        qconfig = checkpoint.awq_config(
            group_size=config.group_size, modules_to_not_convert=[*config.modules_to_not_convert, *skipped], meta=meta
        )
    else:
        sym_of = {name: grid.sym for name, grid in plan.grids.items()}
        qconfig = checkpoint.gptq_config(
            bits=config.bits,
            group_size=config.group_size,
            sym=config.symmetric,
            desc_act=desc_act,
            damp_percent=damp_percent,
            dynamic=checkpoint.gptq_dynamic(quantized, plan.float_linears, config.bits, config.group_size, config.symmetric, sym_of),
            lm_head="lm_head" in quantized,
            meta=meta,
        )
    checkpoint.save_quantized(
        lm, quantized, source.folder, out_dir, layout=plan.layout, quantization_config=qconfig,
        dtype=getattr(torch, config.dtype),
    )
    return HfModel(
        path=str(out_dir),
        task=source.task,
        load_kwargs={k: v for k, v in source.load_kwargs.items() if k == "trust_remote_code"},
    )


def run_calibrated(
    model: HfModel,
    config: QuantPassConfig,
    out_dir: Path,
    ctx: PassContext,
    *,
    algorithm: str,
    layouts: tuple[str, ...],
    quantize_layer: LayerQuantizer,
    quantize_head: HeadQuantizer,
    meta: dict[str, Any],
    **checkpoint_options: Any,
) -> HfModel:
    """The run of a calibrated quantizer (AWQ, GPTQ): load, plan, calibrate, quantize layer by
    layer on the free cores, write the checkpoint. `meta` goes into quantization_config.meta,
    after the calibration settings."""
    start = time.perf_counter()
    config = with_mixed_precision(config, model, ctx, algorithm)
    lm, tokenizer = load_float_model(model, algorithm)
    plan = plan_quantization(lm, config, layouts=layouts)
    describe_plan(plan, ctx.log, algorithm)
    tokens = calibration_tokens(tokenizer, config, ctx)
    ctx.log.info("%s: %d calibration samples x %d tokens", algorithm, tokens.shape[0], tokens.shape[1])
    with compute_threads(config.num_threads, ctx.log):
        quantized = quantize_layer_by_layer(
            lm, tokens, plan, quantize_layer, quantize_head, batch_size=config.batch_size, log=ctx.log, name=algorithm,
        )
    meta = {"num_calib_samples": tokens.shape[0], "calib_seq_len": tokens.shape[1], "seed": config.seed, **meta}
    handle = write_checkpoint(lm, quantized, model, out_dir, plan, config, algorithm=algorithm.lower(), meta=meta,
                              **checkpoint_options)
    ctx.log.info("%s: done in %.1f s -> %s", algorithm, time.perf_counter() - start, out_dir)
    return handle


def with_mixed_precision(config: QuantPassConfig, model: HfModel, ctx: PassContext, algorithm: str) -> QuantPassConfig:
    """`config` with the model folder's mixed-precision info (SelectiveMixedPrecision) applied."""
    from olivepress.passes.torch.mixed_precision import merged_options, read_mixed_precision

    info = read_mixed_precision(model.folder)
    if info is None:
        return config
    return type(config).model_validate(merged_options(config.model_dump(), info, ctx.log, algorithm))


def describe_plan(plan: QuantPlan, log: Any, algorithm: str) -> None:
    counts: dict[Grid, int] = {}
    for grid in plan.grids.values():
        counts[grid] = counts.get(grid, 0) + 1
    summary = ", ".join(
        f"{n} x {g.bits}-bit g{g.group_size}{' sym' if g.sym else ''}" for g, n in sorted(counts.items(), key=lambda x: -x[1])
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


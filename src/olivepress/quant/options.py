"""The quantizers' options: what every quantizer takes (bits, groups, calibration, per-module
overrides), the scale search AWQ and GPTQ's act_scale share, and AWQ's and GPTQ's own. The
passes' `Config` classes are these (plus the pass contract's base)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from olivepress.aliases import take_aliases
from olivepress.data.config import DataConfig
from olivepress.quant.clip import CLIP_GRID, MAX_SHRINK
from olivepress.quant.layout import check_bits, check_group_size


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


class QuantOptions(BaseModel):
    """Options every quantizer takes. Defaults: 4-bit, groups of 128, with zero points."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    bits: int = Field(4, description="Bits per weight: 4, or 8.")
    group_size: int = Field(128, description="Input columns per scale: 32, 64, 128, ... or -1 (one per row).")
    sym: bool | None = Field(None, description="Symmetric grid without zero points (default: false).")
    zero_point: bool | None = Field(None, description="AutoAWQ's spelling of `not sym`.")
    ragged_groups: Literal["smaller_group", "short_last_group", "error"] = Field(
        "smaller_group",
        description=(
            "A layer whose in_features is not a multiple of group_size: use the largest power-of-two "
            "group that divides it (every reader, the ORT GenAI builder included, takes it), keep "
            "group_size with a short last group (GPTQ layout; the ORT GenAI builder cannot read it), or "
            "stop with an error."
        ),
    )
    layout: Literal["auto", "awq", "gptq"] = Field(
        "auto", description="Checkpoint layout; auto: AWQ when it can hold every layer, else GPTQ."
    )
    # 16 x 256 = 4096 tokens: about all of the shipped calibration text. Give more (and more
    # data) for bigger models.
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
        default_factory=dict,
        description="Per-module settings: a regex on the module name -> bits/group_size/sym/skip.",
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto",
        description=(
            "dtype of the tensors that stay float (embeddings, norms); auto: float16, or float32 for "
            "families whose activations overflow float16 (Gemma)."
        ),
    )
    num_threads: int | None = Field(
        None, gt=0, description="CPU threads; default: the cores that other work is not keeping busy."
    )

    # Olive's (and AutoAWQ's) names for these options.
    OLIVE_ALIASES: ClassVar[dict[str, str]] = {
        "lm_head": "include_lm_head",
        "q_group_size": "group_size",
        "w_bit": "bits",
    }

    @model_validator(mode="before")
    @classmethod
    def _olive_names(cls, data: Any) -> Any:
        data, found = take_aliases(data, cls.OLIVE_ALIASES)
        for name, value in found.items():
            if name in data and data[name] != value:
                alias = next(a for a, n in cls.OLIVE_ALIASES.items() if n == name)
                raise ValueError(
                    f"'{alias}' and '{name}' are the same option with different values; keep '{name}'"
                )
            data[name] = value
        return data

    @field_validator("bits")
    @classmethod
    def _bits_pack(cls, bits: int) -> int:
        return check_bits(bits)

    @field_validator("group_size")
    @classmethod
    def _group_size_fits_matmulnbits(cls, group_size: int) -> int:
        return check_group_size(group_size)

    @model_validator(mode="after")
    def _sym_and_zero_point_agree(self) -> QuantOptions:
        if self.sym is not None and self.zero_point is not None and self.sym == self.zero_point:
            raise ValueError("sym and zero_point contradict each other; set only one of them")
        for pattern, override in self.overrides.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"overrides key '{pattern}' is not a valid regex: {exc}") from exc
            if override.bits is not None:
                check_bits(override.bits)
            if override.group_size is not None:
                check_group_size(override.group_size)
        return self

    @property
    def symmetric(self) -> bool:
        if self.sym is not None:
            return self.sym
        return self.zero_point is False


class ScaleSearchOptions(QuantOptions):
    """The options of AWQ's scale search (quant/awq.py), which GPTQ's act_scale runs too."""

    n_grid: int = Field(20, ge=1, description="Scale exponents tried per group: α = 0, 1/n, ..., (n-1)/n.")
    search_tokens: int = Field(
        512, ge=16, description="Calibration tokens the scale search measures its loss on."
    )
    search_rows: int = Field(
        256, ge=16, description="Output rows per Linear the scale search measures its loss on."
    )
    duo_scaling: bool = Field(
        True,
        description=(
            "AutoAWQ's variant: s = mean|x|^α / mean|ŵ|^(1-α), ŵ the weights relative to their group's max."
        ),
    )


class AwqOptions(ScaleSearchOptions):
    """AWQ options on top of the common ones."""

    clip: bool = Field(True, description="Search a clipping range per group after scaling.")
    clip_grid: int = Field(CLIP_GRID, ge=2, description="Clip shrink steps of 1/clip_grid ...")
    max_shrink: float = Field(MAX_SHRINK, gt=0, lt=1, description="... down to max|w| * (1 - max_shrink).")


class GptqOptions(ScaleSearchOptions):
    """GPTQ options on top of the common ones. GPTQ always writes the GPTQ layout.
    With act_scale, AWQ's scale search options (n_grid, search_tokens, ...) apply too."""

    damp_percent: float = Field(
        0.01, gt=0, lt=1, description="Added to H's diagonal, as a fraction of its mean."
    )
    block_size: int = Field(128, gt=0, description="Columns per lazy batch update.")
    desc_act: bool = Field(
        False, description="Act-order: round the most active input columns first (writes g_idx)."
    )
    diag_damp: float = Field(
        1.0,
        ge=0,
        description=(
            "Adds diag_damp x H's own diagonal to H, shrinking it toward independent inputs, so that "
            "GPTQ does not fit correlations that a few thousand calibration tokens cannot pin down "
            "(0: the reference GPTQ)."
        ),
    )
    clip: bool = Field(
        True, description="Pick each group's range by the clipping search (as AWQ does) on H's block."
    )
    act_scale: bool = Field(
        True,
        description=(
            "Before rounding, run AWQ's per-group scale search and fold the scales into the op before each "
            "group (the float model is unchanged), then round the scaled weights with the scaled inputs' H."
        ),
    )

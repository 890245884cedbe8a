"""Mixed-precision info: which modules a later quantizer gives other settings than its own.

SelectiveMixedPrecision writes it as `mixed_precision.json` beside the model's weights, in
Olive's shape (its `mixed_precision_info` model attribute):

    {"default": {"bits": 4, "group_size": 128, "symmetric": false},
     "overrides": {"model.layers.0.self_attn.q_proj": {"bits": 8, ...}, "lm_head": {...}}}

Quantizers read it as Olive's do (olive/passes/pytorch/quant_utils.py, get_quant_config): the
default replaces the pass's own bits / group_size / sym, and each override is merged under the
pass's own override for the same module name, which wins. The file travels with the model
folder (checkpoints copy side files), so RTN after GPTQ still sees it, as in Olive's recipes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from olivepress.errors import OlivepressError

MIXED_PRECISION_FILE = "mixed_precision.json"

# Olive's spellings of the grid settings -> the quantizer options they replace.
_DEFAULT_KEYS = {"bits": "bits", "group_size": "group_size", "symmetric": "sym", "sym": "sym"}
FLOAT_BITS = 16  # Olive's high_bits 16: leave the module in float


def read_mixed_precision(folder: Path) -> dict[str, Any] | None:
    path = folder / MIXED_PRECISION_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise OlivepressError(
            f"{path} is not valid JSON ({exc.msg}); rerun SelectiveMixedPrecision"
        ) from None
    if not isinstance(info, dict) or not isinstance(info.get("overrides", {}), dict):
        raise OlivepressError(f"{path} must map 'default' and 'overrides'; rerun SelectiveMixedPrecision")
    return info


def write_mixed_precision(
    folder: Path, default: dict[str, Any], overrides: dict[str, dict[str, Any]]
) -> None:
    data = {"default": default, "overrides": dict(sorted(overrides.items(), key=lambda kv: _natural(kv[0])))}
    (folder / MIXED_PRECISION_FILE).write_text(json.dumps(data, indent=1) + "\n")


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in name.split(".")]


def override_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """An Olive override ({bits, group_size, symmetric}) as ModuleOverride fields."""
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key == "bits" and int(value) >= FLOAT_BITS:
            settings["skip"] = True
        elif key in _DEFAULT_KEYS:
            settings[_DEFAULT_KEYS[key]] = value
        else:
            settings[key] = value
    return settings


def merged_options(
    options: dict[str, Any], info: dict[str, Any] | None, log: logging.Logger, where: str
) -> dict[str, Any]:
    """The quantizer's options with the mixed-precision info applied (Olive's rules, above)."""
    if not info:
        return options
    merged = dict(options)
    for key, value in (info.get("default") or {}).items():
        name = _DEFAULT_KEYS.get(key)
        if name is None or value is None:
            continue
        if name == "sym":
            merged.pop("zero_point", None)
        if merged.get(name) != value:
            log.info("%s: %s=%s from the mixed-precision info (SelectiveMixedPrecision)", where, name, value)
        merged[name] = value
    overrides = {name: dict(value) for name, value in (merged.get("overrides") or {}).items()}
    for name, raw in (info.get("overrides") or {}).items():
        own = {k: v for k, v in overrides.get(name, {}).items() if v is not None}
        overrides[name] = override_settings(raw) | override_settings(own)
    merged["overrides"] = overrides
    counts: dict[int, int] = {}
    for raw in (info.get("overrides") or {}).values():
        counts[int(raw.get("bits", 0))] = counts.get(int(raw.get("bits", 0)), 0) + 1
    log.info(
        "%s: mixed-precision info gives %s",
        where,
        ", ".join(f"{n} modules {b}-bit" for b, n in sorted(counts.items())) or "no overrides",
    )
    return merged

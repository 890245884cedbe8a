"""Options that Olive (or AutoAWQ, or the ORT GenAI builder) spells differently from us."""

from __future__ import annotations

from typing import Any


def take_aliases(data: Any, aliases: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """`data` (a config dict) without the keys named in `aliases`, and their values under the
    names they map to; `data` itself is left as it was, and a non-dict comes back unchanged."""
    if not isinstance(data, dict) or not any(key in data for key in aliases):
        return data, {}
    rest = dict(data)
    return rest, {name: rest.pop(alias) for alias, name in aliases.items() if alias in rest}

"""Pass options written as choices become search dimensions.

Three spellings, all in the seed's spirit:

- a list for an option that is not itself a list: ``"block_size": [32, 64, 128]``;
- Olive's serialised search parameter: ``{"type": "Categorical", "support": [0, 4]}``;
- ``"SEARCHABLE_VALUES"``: every value the option allows (a Literal's values, or true/false).
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError

from olivepress.errors import OlivepressError, did_you_mean
from olivepress.passes.base import PassConfig

SEARCHABLE = "SEARCHABLE_VALUES"


def split_options(
    where: str, pass_type: str, config_cls: type[PassConfig], options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(fixed options, option -> choices) of one pass."""
    fixed: dict[str, Any] = {}
    choices: dict[str, list[Any]] = {}
    fields = config_cls.model_fields
    for key, value in options.items():
        # An Olive spelling the Config maps onto its own options takes its value as written.
        aliased = key not in fields and key in getattr(config_cls, "OLIVE_ALIASES", {})
        found = None if aliased else _choices(key, value, fields.get(key))
        if found is None:
            fixed[key] = value
            continue
        if key not in fields:
            raise OlivepressError(
                f"{where}: search option '{key}' is not an option of {pass_type}{did_you_mean(key, fields)}; "
                f"its options: {', '.join(fields)}"
            )
        if not found:
            raise OlivepressError(
                f"{where}.{key}: a search needs at least one choice; list the values to try"
            )
        choices[key] = found
    return fixed, choices


def _choices(key: str, value: Any, field: Any) -> list[Any] | None:
    if isinstance(value, dict) and (
        value.get("olive_parameter_type") == "SearchParameter" or value.get("type") == "Categorical"
    ):
        support = value.get("support", value.get("values"))
        if not isinstance(support, list):
            raise OlivepressError(
                f"search option '{key}' of type Categorical needs 'support': a list of values"
            )
        return list(support)
    if value == SEARCHABLE:
        if field is None:
            return []  # reported as an unknown option by the caller
        values = _finite_values(field.annotation)
        if values is None:
            raise OlivepressError(
                f"option '{key}' has no fixed set of values to search ({SEARCHABLE}); list the "
                f'choices, e.g. "{key}": [a, b]'
            )
        return values
    if isinstance(value, list):
        if field is None:
            return list(value)
        try:
            TypeAdapter(field.annotation).validate_python(value)
        except ValidationError:
            return list(value)  # the option takes one value, so a list is a set of choices
    return None


def _finite_values(annotation: Any) -> list[Any] | None:
    if annotation is bool:
        return [False, True]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        values: list[Any] = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            found = _finite_values(arg)
            if found is None:
                return None
            values += found
        return values or None
    return None

"""pydantic validation errors rewritten as one line a person can act on."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from olivepress.errors import OlivepressError, did_you_mean


def _model_fields_at(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the pydantic model found by walking `loc` from `root`, and the Olive names it
    takes or knows (for 'did you mean')."""
    from olivepress.workflow.olive_compat import olive_names_for

    model = _model_at(root, loc)
    return [*model.model_fields, *olive_names_for(model)] if model is not None else []


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: Any = root
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = _innermost_model(field.annotation) if field else None
        else:
            current = None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _innermost_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _innermost_model(arg)
        if found is not None:
            return found
    return None


def explain(exc: ValidationError, root: type[BaseModel], where: str = "") -> OlivepressError:
    """The first validation error as an OlivepressError naming the key, where it is, and a fix."""
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    parent = tuple(p for p in loc[:-1])
    path = ".".join(str(p) for p in (where.split(".") if where else []) + list(loc) if p != "")
    parent_path = ".".join(str(p) for p in (where.split(".") if where else []) + list(parent) if p != "")
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        fields = _model_fields_at(root, parent)
        place = f" in {parent_path}" if parent_path else " at the top level"
        hint = did_you_mean(key, fields)
        known = f"; known keys: {', '.join(dict.fromkeys(fields))}" if fields and not hint else ""
        return OlivepressError(f"unknown key '{key}'{place}{hint}{known}")
    if kind == "missing":
        return OlivepressError(f"missing required key '{path}'; add it to the config")
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return OlivepressError(f"{path}: {error['msg']} (got {shown})")

"""The JSON Schema of the flat workflow form, with each pass type's own options spelled out."""

from __future__ import annotations

from typing import Any

from olivepress.passes.registry import PASSES
from olivepress.workflow.config import WorkflowConfig


def workflow_json_schema() -> dict[str, Any]:
    schema = WorkflowConfig.model_json_schema()
    schema["title"] = "olivepress workflow"
    definitions = schema.setdefault("$defs", {})
    variants = []
    for spec in PASSES:
        pass_schema = spec.module.Config.model_json_schema()
        for name, definition in pass_schema.pop("$defs", {}).items():
            definitions.setdefault(name, definition)
        properties = {"type": {"enum": [spec.name, *spec.aliases]}, **pass_schema.get("properties", {})}
        variants.append(
            {
                "title": spec.name,
                "type": "object",
                "properties": properties,
                "required": ["type", *pass_schema.get("required", [])],
                "additionalProperties": False,
            }
        )
    schema["properties"]["passes"]["additionalProperties"] = {"oneOf": variants}
    return schema

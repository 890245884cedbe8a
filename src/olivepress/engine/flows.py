"""A flow of passes through the cache: each pass's key, a cached entry or a fresh run, and
the footprint node it leaves."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from olivepress.data.config import DataConfig
from olivepress.engine.cache import PassCache, pass_key
from olivepress.engine.footprint import FootprintNode
from olivepress.errors import OlivepressError
from olivepress.models.fingerprint import file_digest
from olivepress.models.handles import ModelHandle
from olivepress.passes.base import PassContext
from olivepress.workflow.load import PlannedPass

log = logging.getLogger("olivepress")


def run_flow(
    flow: list[PlannedPass], model: ModelHandle, fingerprint: str, cache: PassCache, ctx: PassContext
) -> tuple[ModelHandle, list[FootprintNode]]:
    nodes: list[FootprintNode] = []
    parent = fingerprint[:16]
    for index, planned in enumerate(flow, start=1):
        module = planned.spec.module
        if model.kind not in module.ACCEPTS:
            kinds = " or ".join(module.ACCEPTS)
            raise OlivepressError(
                f"pass '{planned.name}' ({planned.spec.name}) takes a {kinds} model but gets {model.kind} "
                f"({model.path}); reorder the passes"
            )
        options = planned.config.model_dump(mode="json")
        key = pass_key(
            fingerprint, planned.spec.name, module.VERSION, {"options": options, **_key_context(options, ctx)}
        )
        label = f"[{index}/{len(flow)}] {planned.name} ({planned.spec.name})"

        def produce(
            out: Path, model: ModelHandle = model, planned: PlannedPass = planned, label: str = label
        ) -> ModelHandle:
            log.info("%s: running", label)
            return _run_pass(planned, model, out, ctx)

        entry = cache.get_or_run(key, produce)
        if entry.from_cache:
            log.info("%s: cached", label)
        else:
            log.info("%s: done in %.1f s", label, entry.duration_s)
        nodes.append(
            FootprintNode(
                model_id=key[:16],
                parent_model_id=parent,
                pass_name=planned.name,
                pass_type=planned.spec.name,
                config=options,
                from_cache=entry.from_cache,
                duration_s=round(entry.duration_s, 3),
                model=entry.handle.model_dump(),
            )
        )
        model, fingerprint, parent = entry.handle, key, key[:16]
    return model, nodes


def _key_context(options: dict[str, Any], ctx: PassContext) -> dict[str, Any]:
    """What else a pass's output depends on: the target (passes may read it from the context),
    and the content of every data config its options name, down to the data files' bytes."""
    used = sorted(name for name in ctx.data_configs if mentions(options, name))
    data = {
        name: [
            ctx.data_configs[name].model_dump(mode="json"),
            _data_files_fingerprint(ctx.data_configs[name]),
        ]
        for name in used
    }
    return {"device": ctx.device, "execution_provider": ctx.execution_provider, "data_configs": data}


def mentions(value: Any, name: str) -> bool:
    """Whether `value` (an option, or a dict or list of them) names `name` anywhere."""
    if isinstance(value, str):
        return value == name
    if isinstance(value, dict):
        return any(mentions(item, name) for item in value.values())
    if isinstance(value, list):
        return any(mentions(item, name) for item in value)
    return False


def _data_files_fingerprint(data: DataConfig) -> list[str]:
    files = data.load_dataset_config.data_files
    if files is None:  # a hub data set (wikitext): read from the shipped text, part of the package
        return []
    paths = (
        [files]
        if isinstance(files, str)
        else list(files)
        if isinstance(files, list)
        else [p for value in files.values() for p in ([value] if isinstance(value, str) else value)]
    )
    return [file_digest(Path(p)) if Path(p).is_file() else f"missing:{p}" for p in paths]


def _run_pass(planned: PlannedPass, model: ModelHandle, out_dir: Path, ctx: PassContext) -> ModelHandle:
    try:
        return planned.spec.module.run(model, planned.config, out_dir, ctx)
    except OlivepressError:
        raise
    except Exception as exc:
        raise OlivepressError(
            f"pass '{planned.name}' ({planned.spec.name}) failed: {type(exc).__name__}: {exc}"
        ) from exc

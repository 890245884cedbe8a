"""The output folder: the final model copied out of the cache, plus footprint.json.

Layout: ``<output_dir>/model/`` (the model; for an ORT GenAI model that is what
``og.Model`` opens), ``<output_dir>/adapter/`` when the result carries a PEFT adapter, and
``<output_dir>/footprint.json``. The folder is written beside its final place and renamed
into it, so an interrupted run never leaves a half-written output.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel, ModelHandle
from olivepress.paths import atomic_folder, check_writable

MARKER = ".olivepress-output"


def prepare_output_dir(output_dir: Path) -> None:
    """Check before any work that the output can be written, and will not clobber user files."""
    check_writable(output_dir, "output_dir")
    if output_dir.is_file():
        raise OlivepressError(f"output_dir {output_dir} is a file; choose a folder path")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / MARKER).exists():
        raise OlivepressError(
            f"output_dir {output_dir} already holds files that olivepress did not write; "
            "choose an empty or new folder (olivepress replaces only its own outputs)"
        )


def write_output(
    output_dir: Path,
    handle: ModelHandle,
    footprint: dict[str, Any],
    extras: Callable[[Path, dict[str, Any]], None] | None = None,
) -> ModelHandle:
    """Copy the final model out of the cache into ``output_dir``; returns the handle there.

    `extras(folder, footprint)` writes further files (the report) into the folder before it
    is renamed into place.
    """
    with atomic_folder(output_dir) as tmp:
        shutil.copytree(handle.folder, tmp / "model")
        update: dict[str, Any] = {"path": str(output_dir / "model")}
        if isinstance(handle, HfModel) and handle.adapter_path:
            shutil.copytree(handle.adapter_path, tmp / "adapter")
            update["adapter_path"] = str(output_dir / "adapter")
        adapters = getattr(handle, "adapters", None)
        if adapters:
            update["adapters"] = {
                name: str(output_dir / "model" / Path(path).relative_to(handle.folder))
                for name, path in adapters.items()
            }
        final = handle.model_copy(update=update)
        footprint = {**footprint, "output_model": final.model_dump()}
        (tmp / "footprint.json").write_text(json.dumps(footprint, indent=2, default=str))
        if extras is not None:
            extras(tmp, footprint)
        (tmp / MARKER).write_text("written by olivepress; safe to replace on the next run\n")
    return final

"""Writing a pass's output ONNX model into its out_dir (opening one: models/onnx_session.py).

Every pass on the generic ONNX path reads its input and writes its output the same way:

- the input folder holds exactly one ``.onnx`` file (with or without external data);
- the output folder gets the new ``.onnx`` under the same name, its tensors inside the file
  or, past protobuf's 2 GB limit (or when asked), in one ``<name>.data`` file beside it;
- everything else in the input folder (tokenizer, config.json, genai_config.json,
  inference_settings.json, ...) is copied along, so each output folder is self-contained;
- ``inference_settings.json`` says which execution providers and session options the model
  is meant for; a pass whose config sets ``inference_settings`` writes it, others carry it.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from olivepress.models.handles import OnnxModel
from olivepress.models.onnx_session import SETTINGS_FILE, InferenceSettings, onnx_file
from olivepress.passes.base import PassConfig

if TYPE_CHECKING:
    import onnx

log = logging.getLogger("olivepress")

MODEL_FILE = "model.onnx"
# Protobuf cannot serialise a message of 2 GiB or more; leave room for the graph itself.
INLINE_LIMIT_BYTES = 2**31 - 2**26


class OnnxOutputConfig(PassConfig):
    """Options every pass that writes an ONNX model takes (Olive's names)."""

    save_as_external_data: bool = Field(
        False,
        description="Keep tensors in a file beside the model even under 2 GB (models over 2 GB always do).",
    )
    all_tensors_to_one_file: bool = Field(
        True, description="With external data: one file for all tensors, else one per tensor."
    )
    external_data_name: str | None = Field(
        None, description="Name of the external data file (default: <model file>.data)."
    )
    size_threshold: int = Field(
        1024, ge=0, description="With external data: tensors smaller than this many bytes stay inline."
    )
    convert_attribute: bool = Field(
        False, description="With external data: move tensors held in node attributes out too."
    )
    inference_settings: InferenceSettings | None = Field(
        None,
        description=(
            "Providers and session options to write into inference_settings.json (default: carry the "
            "input's)."
        ),
    )


def load_model(path: Path) -> onnx.ModelProto:
    """The model with its external data (if any) read in."""
    import onnx

    return onnx.load(str(path), load_external_data=True)


def external_data_files(path: Path) -> set[str]:
    """Names of the files the model at `path` keeps tensors in (relative to its folder)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    return {ExternalDataInfo(t).location for t in _get_all_tensors(model) if uses_external_data(t)}


def tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes of tensor data held in the model's initializers (the main graph and subgraphs)."""
    import numpy as np
    from onnx import helper
    from onnx.external_data_helper import _get_all_tensors

    total = 0
    for tensor in _get_all_tensors(model):
        if tensor.HasField("raw_data"):
            total += len(tensor.raw_data)
            continue
        count = int(np.prod(tensor.dims)) if tensor.dims else 1
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        except (KeyError, TypeError):
            itemsize = 4
        total += count * itemsize
    return total


def write_model(
    model: onnx.ModelProto,
    out_dir: Path,
    config: OnnxOutputConfig,
    *,
    source: OnnxModel | None = None,
    file_name: str = MODEL_FILE,
) -> OnnxModel:
    """Save `model` into `out_dir` with the source folder's other files; the new handle.

    The proto is changed in place when its tensors go to external data, so do not use it after.
    """
    import onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    adapters: dict[str, str] = {}
    if source is not None:
        source_file = onnx_file(source, "write_model")
        skipped = {source_file.name, *external_data_files(source_file)}
        copy_beside(
            source.folder, out_dir, lambda path: path.name in skipped and path.parent == source.folder
        )
        adapters = _rebased_adapters(source, out_dir)

    path = out_dir / file_name
    external = config.save_as_external_data or tensor_bytes(model) > INLINE_LIMIT_BYTES
    if external:
        location = config.external_data_name or f"{file_name}.data"
        (out_dir / location).unlink(missing_ok=True)  # onnx appends to an existing data file
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=config.all_tensors_to_one_file,
            location=location,
            size_threshold=config.size_threshold,
            convert_attribute=config.convert_attribute,
        )
    else:
        onnx.save_model(model, str(path))
    if config.inference_settings is not None:
        (out_dir / SETTINGS_FILE).write_text(json.dumps(config.inference_settings.model_dump(), indent=2))
    return OnnxModel(path=str(out_dir), adapters=adapters)


def copy_beside(source: Path, out_dir: Path, skip: Callable[[Path], bool]) -> None:
    """Copy the files and folders of `source` into `out_dir`, except hidden ones and those `skip` names."""
    for item in sorted(source.iterdir()):
        if item.name.startswith(".") or skip(item):
            continue
        target = out_dir / item.name
        if item.is_dir():
            shutil.copytree(
                item,
                target,
                dirs_exist_ok=True,
                ignore=lambda folder, names: _hidden_and_skipped(folder, names, skip),
            )
        else:
            shutil.copy2(item, target)


def _hidden_and_skipped(folder: str, names: Iterable[str], skip: Callable[[Path], bool]) -> set[str]:
    return {name for name in names if name.startswith(".") or skip(Path(folder) / name)}


def _rebased_adapters(source: OnnxModel, out_dir: Path) -> dict[str, str]:
    rebased = {}
    for name, adapter in source.adapters.items():
        try:
            rebased[name] = str(out_dir / Path(adapter).resolve().relative_to(source.folder.resolve()))
        except ValueError:
            rebased[name] = adapter  # kept outside the folder: still valid where it is
    return rebased


def set_metadata(model: onnx.ModelProto, **entries: str) -> None:
    """Add or replace `olivepress.<key>` entries in the model's metadata_props."""
    wanted = {f"olivepress.{key}": value for key, value in entries.items()}
    kept = [prop for prop in model.metadata_props if prop.key not in wanted]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in wanted.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def read_metadata(path: Path) -> dict[str, str]:
    """The model's `olivepress.*` metadata (without the prefix)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {
        p.key.removeprefix("olivepress."): p.value
        for p in model.metadata_props
        if p.key.startswith("olivepress.")
    }


@contextmanager
def quiet_loggers(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise the level of noisy libraries' loggers ('' is the root logger) for the block."""
    loggers = [logging.getLogger(name or None) for name in names]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.level))
    try:
        yield
    finally:
        for logger, old in zip(loggers, saved, strict=True):
            logger.setLevel(old)

"""Turning what a user names (a folder, a hub id, a .gguf file, 'default') into a handle."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel, ModelHandle, OnnxModel

log = logging.getLogger("olivepress")

DEFAULT_ALIASES = {"", "default"}


def resolve_model(
    name_or_path: str | None,
    *,
    adapter_path: str | None = None,
    task: str = "text-generation",
    load_kwargs: dict[str, Any] | None = None,
) -> ModelHandle:
    """A handle for the model the user named; clear errors for anything that is not one."""
    load_kwargs = dict(load_kwargs or {})
    if adapter_path is not None:
        adapter_path = str(_check_adapter(Path(adapter_path)))
    if name_or_path is None or name_or_path.strip().lower() in DEFAULT_ALIASES:
        from olivepress.models.default import embedded_model_folder

        folder = embedded_model_folder()
        return HfModel(path=str(folder), adapter_path=adapter_path, task=task, load_kwargs=load_kwargs)

    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise OlivepressError(f"GGUF file {path} does not exist; check the path")
        from olivepress.models.gguf import converted_gguf_folder

        folder = converted_gguf_folder(path)
        return HfModel(path=str(folder), adapter_path=adapter_path, task=task, load_kwargs=load_kwargs)
    if path.exists():
        return _handle_for_folder(path.resolve(), adapter_path, task, load_kwargs)
    if _looks_like_hub_id(name_or_path):
        folder = _hub_cache_folder(name_or_path)
        return _handle_for_folder(folder, adapter_path, task, load_kwargs)
    raise OlivepressError(
        f"model path {name_or_path} does not exist; pass an existing model folder, a .gguf file or a "
        "Hugging Face model id"
    )


def _handle_for_folder(
    folder: Path, adapter_path: str | None, task: str, load_kwargs: dict[str, Any]
) -> ModelHandle:
    # An olivepress output folder (footprint.json beside model/) stands for the model in it, so
    # `quantize -o models/phi/awq` is followed by `finetune -m models/phi/awq` as in the seed lab.
    if (folder / "footprint.json").is_file() and (folder / "model").is_dir():
        folder = folder / "model"
    if folder.is_file():
        if folder.suffix == ".onnx":
            return OnnxModel(path=str(folder.parent))
        raise OlivepressError(
            f"{folder} is a file, not a model folder; pass the folder that holds config.json or the "
            ".onnx model"
        )
    if (folder / "genai_config.json").is_file() or any(folder.glob("*.onnx")):
        if adapter_path is not None:
            raise OlivepressError(
                f"{folder} is an ONNX model; a PEFT adapter applies to a Hugging Face model, not to ONNX"
            )
        return OnnxModel(path=str(folder))
    if (folder / "config.json").is_file():
        return HfModel(path=str(folder), adapter_path=adapter_path, task=task, load_kwargs=load_kwargs)
    if (folder / "adapter_config.json").is_file():
        raise OlivepressError(
            f"{folder} is a PEFT adapter, not a model; pass its base model and give the adapter as "
            "adapter_path"
        )
    raise OlivepressError(
        f"{folder} is not a model folder: it has no config.json (Hugging Face) and no .onnx file; "
        "pass the folder a model was saved to"
    )


def _check_adapter(path: Path) -> Path:
    if not path.exists():
        raise OlivepressError(
            f"adapter path {path} does not exist; pass a PEFT adapter folder (with adapter_config.json)"
        )
    if not (path / "adapter_config.json").is_file():
        raise OlivepressError(f"{path} is not a PEFT adapter folder: it has no adapter_config.json")
    return path.resolve()


def adapter_base_name(adapter_path: Path) -> str | None:
    """The base model an adapter says it was trained on (adapter_config.json)."""
    config = json.loads((adapter_path / "adapter_config.json").read_text())
    return config.get("base_model_name_or_path")


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _hub_cache_folder(repo_id: str) -> Path:
    """A hub model that is already in the local Hugging Face cache (no download attempted)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise OlivepressError(
            f"model '{repo_id}' is not a local folder and is not in the Hugging Face cache; olivepress does "
            "not download models: fetch it first (e.g. 'hf download " + repo_id + "') or pass a local folder"
        ) from None

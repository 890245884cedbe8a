"""An ONNX model folder at run time: its one .onnx file, the inference_settings.json that says
how to open it, and an ONNX Runtime session opened that way.

The passes that write ONNX models (passes/onnx/) and what runs or checks them (evaluate/,
benchmarks) share these, so a model opens the same way wherever it is used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from olivepress.errors import OlivepressError
from olivepress.models.handles import OnnxModel

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger("olivepress")

SETTINGS_FILE = "inference_settings.json"


class InferenceSettings(BaseModel):
    """How to open the model in ONNX Runtime: written as inference_settings.json beside it."""

    model_config = ConfigDict(extra="forbid")

    execution_providers: list[str] = Field(
        description="Providers in order of preference, e.g. [CUDAExecutionProvider, CPUExecutionProvider]."
    )
    provider_options: list[dict[str, Any]] = Field(
        default_factory=list, description="One options dict per provider."
    )
    session_options: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "SessionOptions attributes (graph_optimization_level: ORT_ENABLE_ALL, ...); "
            "config_entries: session config entries."
        ),
    )


def onnx_file(model: OnnxModel, pass_name: str) -> Path:
    """The one .onnx file of the model's folder; a clear error when there is none or several."""
    folder = model.folder
    if not folder.is_dir():
        raise OlivepressError(f"{pass_name}: model folder {folder} does not exist; pass an ONNX model folder")
    files = sorted(folder.glob("*.onnx"))
    if not files:
        raise OlivepressError(
            f"{pass_name} takes an ONNX model, but {folder} has no .onnx file; convert the model first "
            "(OnnxConversion, or ModelBuilder for a decoder LLM)"
        )
    if len(files) > 1:
        names = ", ".join(f.name for f in files)
        raise OlivepressError(
            f"{pass_name} works on one ONNX model, but {folder} holds several ({names}); "
            "give a folder with one .onnx file"
        )
    return files[0]


def read_inference_settings(folder: Path) -> InferenceSettings | None:
    path = folder / SETTINGS_FILE
    return InferenceSettings.model_validate_json(path.read_text()) if path.is_file() else None


def inference_session(folder: Path, providers: list[str] | None = None) -> onnxruntime.InferenceSession:
    """An ORT session on the folder's model, opened as its inference_settings.json says.

    Providers this onnxruntime build lacks are left out (with a log line); CPU is the fallback.
    """
    import onnxruntime as ort

    settings = read_inference_settings(folder)
    if settings is None:
        settings = InferenceSettings(execution_providers=["CPUExecutionProvider"])
    wanted = providers or settings.execution_providers
    options = settings.provider_options or [{} for _ in settings.execution_providers]
    by_name = dict(zip(settings.execution_providers, options, strict=False))
    available = set(ort.get_available_providers())
    chosen = [name for name in wanted if name in available] or ["CPUExecutionProvider"]
    missing = [name for name in wanted if name not in available]
    if missing:
        log.info(
            "%s: %s not available here; running on %s", folder.name, ", ".join(missing), ", ".join(chosen)
        )
    session_options = session_options_from(settings.session_options)
    model = onnx_file(OnnxModel(path=str(folder)), "inference_session")
    return ort.InferenceSession(
        str(model),
        session_options,
        providers=chosen,
        provider_options=[by_name.get(name, {}) for name in chosen],
    )


def session_options_from(values: dict[str, Any]) -> onnxruntime.SessionOptions:
    """SessionOptions from plain data: attribute names with values, enums by name."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    enums = {"graph_optimization_level": ort.GraphOptimizationLevel, "execution_mode": ort.ExecutionMode}
    for key, value in values.items():
        if key == "config_entries":
            for entry, entry_value in value.items():
                options.add_session_config_entry(entry, str(entry_value))
        elif key in enums and isinstance(value, str):
            setattr(options, key, getattr(enums[key], value))
        elif hasattr(options, key):
            setattr(options, key, value)
        else:
            raise OlivepressError(
                f"session option '{key}' is not an onnxruntime SessionOptions attribute; check its spelling"
            )
    return options

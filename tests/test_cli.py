"""The command line: flag spellings, help, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def olivepress(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "olivepress", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    import re

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def write(tmp_path: Path, config: dict, name: str = "w.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return str(path)


def test_help_lists_every_command_and_flag():
    top = olivepress("--help")
    assert top.returncode == 0
    for command in ("run", "generate", "schema"):
        assert command in top.stdout
    run_help = olivepress("run", "--help").stdout
    for flag in ("--config", "--output_path", "--clean_cache", "--log_level"):
        assert flag in run_help


def test_schema_command_prints_json(tmp_path):
    result = olivepress("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "olivepress workflow"
    olivepress("schema", "--output-path", str(tmp_path / "s.json"))
    assert json.loads((tmp_path / "s.json").read_text())["title"] == "olivepress workflow"


def test_unknown_flag_suggests_the_right_one():
    result = olivepress("run", "--confg", "x.json")
    assert_one_line_error(result, "unrecognized arguments: --confg.*did you mean '--config'")


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        ({"passes": {"b": {"type": "Quantise"}}}, "unknown pass type 'Quantise'"),
        (
            {"passes": {"b": {"type": "ModelBuilder", "precison": "int4"}}},
            "unknown key 'precison' in passes.b .did you mean 'precision'",
        ),
        ({"passes": {"b": {"type": "ModelBuilder", "precision": 4}}}, "passes.b.precision"),
        (
            {"systems": {"aml": {"type": "AzureML", "config": {"aml_compute": "c"}}}},
            "system 'aml' has type 'AzureML'.*LocalSystem",
        ),
    ],
)
def test_bad_config_is_one_line(tmp_path, config, pattern):
    assert_one_line_error(olivepress("run", "--config", write(tmp_path, config)), pattern)


def test_missing_config_file(tmp_path):
    assert_one_line_error(
        olivepress("run", "--config", str(tmp_path / "nope.json")), "config file .*nope.json does not exist"
    )


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "passes": {\n    "b": {"type": "ModelBuilder",}\n  }\n}\n')
    assert_one_line_error(olivepress("run", "--config", str(path)), "not valid JSON at line 3")


def test_missing_model_path(tmp_path):
    config = {
        "input_model": {"model_path": str(tmp_path / "no-such-model")},
        "passes": {"b": {"type": "ModelBuilder"}},
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "c"),
    }
    assert_one_line_error(
        olivepress("run", "--config", write(tmp_path, config)), "model path .*no-such-model does not exist"
    )
    assert not (tmp_path / "out").exists()


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    config = {
        "input_model": {"model_path": str(tmp_path / "notes")},
        "passes": {"b": {"type": "ModelBuilder"}},
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "c"),
    }
    assert_one_line_error(
        olivepress("run", "--config", write(tmp_path, config)), "is not a model folder: it has no config.json"
    )


def test_unwritable_output_dir(tmp_path, tiny_llama_dir):
    config = {
        "input_model": {"model_path": str(tiny_llama_dir)},
        "passes": {"b": {"type": "ModelBuilder"}},
        "output_dir": "/proc/olivepress-test/out",
        "cache_dir": str(tmp_path / "c"),
    }
    assert_one_line_error(
        olivepress("run", "--config", write(tmp_path, config)),
        "output_dir /proc/olivepress-test/out is not writable",
    )


def test_kebab_and_snake_flags_and_output_override(tmp_path, tiny_llama_dir):
    config = {
        "input_model": {"model_path": str(tiny_llama_dir)},
        "passes": {"b": {"type": "ModelBuilder", "precision": "fp32"}},
        "output_dir": str(tmp_path / "unused"),
        "cache_dir": str(tmp_path / "c"),
    }
    path = write(tmp_path, config)
    first = olivepress("run", "--config", path, "--output-path", str(tmp_path / "a"), "--log-level", "2")
    assert first.returncode == 0, first.stderr
    second = olivepress("run", "--config", path, "-o", str(tmp_path / "b"), "--log_level", "1")
    assert second.returncode == 0, second.stderr
    assert "cached" in second.stderr
    assert (tmp_path / "a" / "model" / "genai_config.json").is_file()
    assert (tmp_path / "b" / "model" / "genai_config.json").is_file()
    assert not (tmp_path / "unused").exists()


def test_generate_on_a_folder_that_is_not_genai(tmp_path):
    assert_one_line_error(
        olivepress("generate", "-m", str(tmp_path), "-p", "hi"), "is not an ORT GenAI model"
    )


def test_generate_rejects_zero_new_tokens(tmp_path):
    assert_one_line_error(
        olivepress("generate", "-m", str(tmp_path), "-p", "hi", "--max_new_tokens", "0"),
        "max_new_tokens must be at least 1",
    )

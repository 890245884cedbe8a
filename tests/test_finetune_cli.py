"""`olivepress finetune` on the command line: the seed lab's step 2, and one-line errors."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from test_cli import assert_one_line_error, olivepress

SEED_TEMPLATE = r"<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>"


def finetune(*args: str, cwd: Path | None = None):
    return olivepress("finetune", *args, cwd=cwd)


def test_the_seed_labs_command_runs_and_a_rerun_is_cached(tiny_llama_dir, travel_data, tmp_path):
    args = [
        "--method",
        "lora",
        "--model_name_or_path",
        str(tiny_llama_dir),
        "--data_files",
        str(travel_data),
        "--data_name",
        "json",
        "--text_template",
        SEED_TEMPLATE,
        "--max_steps",
        "3",
        "--output_path",
        "./models/phi/ft",
        "--log_level",
        "1",
        "--per_device_train_batch_size",
        "4",
        "--warmup_steps",
        "1",
    ]
    first = finetune(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "models" / "phi" / "ft"
    assert (out / "model" / "config.json").is_file()
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "training_log.jsonl").is_file()
    assert "step 3/3" in first.stderr
    footprint = json.loads((out / "footprint.json").read_text())
    options = footprint["nodes"][0]["config"]
    assert options["training_args"]["max_steps"] == 3 and options["training_args"]["warmup_steps"] == 1
    # The template's "\n" typed in a shell are newlines by the time they reach the data config.
    assert options["train_data_config"]["pre_process_data_config"]["text_template"].startswith(
        "<|user|>\n{prompt}"
    )
    again = finetune(*args, cwd=tmp_path)
    assert again.returncode == 0 and "cached" in again.stdout + again.stderr


def test_help_lists_the_seed_flags_and_training_arguments():
    text = finetune("--help").stdout
    for flag in (
        "--method",
        "--model_name_or_path",
        "--data_files",
        "--data_name",
        "--text_template",
        "--max_steps",
        "--output_path",
        "--log_level",
        "--lora_r",
        "--lora_alpha",
        "--lora_dropout",
        "--target_modules",
        "--eval_split",
        "--num_train_epochs",
        "--learning_rate",
        "--per_device_train_batch_size",
        "--gradient_accumulation_steps",
        "--text_field",
        "--use_chat_template",
        "--max_seq_len",
        "--split",
        "--trust_remote_code",
        "--cache_dir",
        "--warmup_steps",
        "--lr_scheduler_type",
    ):
        assert flag in text, flag


@pytest.fixture()
def model_flags(tiny_llama_dir, tmp_path) -> list[str]:
    return ["-m", str(tiny_llama_dir), "-o", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache")]


def write_data(tmp_path: Path, text: str, name: str = "data.jsonl") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_missing_data_file(model_flags, tmp_path):
    result = finetune(
        *model_flags, "--data_files", str(tmp_path / "nope.jsonl"), "--text_template", "{prompt}"
    )
    assert_one_line_error(result, r"data file '.*nope.jsonl' not found")


def test_data_that_is_not_json_names_the_line(model_flags, tmp_path):
    data = write_data(tmp_path, '{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": \n')
    result = finetune(*model_flags, "--data_files", data, "--text_template", "{prompt} {response}")
    assert_one_line_error(result, r"cannot read data file .* as JSON: line 2")


def test_a_template_field_the_data_lacks_names_it_and_the_fields(model_flags, tmp_path, travel_data):
    started = time.perf_counter()
    result = finetune(
        *model_flags, "--data_files", str(travel_data), "--text_template", "{question}\n{response}"
    )
    assert_one_line_error(result, r"field 'question', which the data does not have.*'prompt', 'response'")
    assert "Training" not in result.stderr  # it failed on the data, before any model was loaded
    assert time.perf_counter() - started < 60


def test_an_empty_data_set(model_flags, tmp_path):
    result = finetune(*model_flags, "--data_files", write_data(tmp_path, ""), "--text_template", "{prompt}")
    assert_one_line_error(result, r"data file .* is empty")


def test_max_steps_zero(model_flags, travel_data):
    result = finetune(
        *model_flags, "--data_files", str(travel_data), "--text_template", "{prompt}", "--max_steps", "0"
    )
    assert_one_line_error(result, r"max_steps is 0; give a positive number of optimizer steps, or -1")


def test_unknown_method_suggests_one(model_flags, travel_data):
    result = finetune(
        *model_flags, "--method", "lorra", "--data_files", str(travel_data), "--text_template", "{prompt}"
    )
    assert_one_line_error(
        result, r"unknown finetune method 'lorra' \(did you mean 'lora'\?\); choose one of lora, qlora"
    )


def test_misspelt_training_argument_suggests_the_flag(model_flags, travel_data):
    result = finetune(*model_flags, "--data_files", str(travel_data), "--learning_rat", "1e-3")
    assert_one_line_error(result, r"unrecognized arguments: --learning_rat.*did you mean '--learning_rate'")


def test_an_adapter_for_another_base_model_is_one_line(tiny_lora_dir, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_models import save_tiny_llama

    other = save_tiny_llama(tmp_path / "wider", hidden_size=96)
    config = {
        "input_model": {"model_path": str(other), "adapter_path": str(tiny_lora_dir)},
        "passes": {"merge": {"type": "MergeAdapterWeights"}},
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "merge.json"
    path.write_text(json.dumps(config))
    result = olivepress("run", "--config", str(path), "--log_level", "3")
    # (transformers' loading bar may come before it: that is MergeAdapterWeights' library output.)
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert result.returncode == 1 and "Traceback" not in result.stderr and len(errors) == 1, result.stderr
    assert re.search(
        r"^olivepress run: error: the adapter at .* was trained on another base model .*q_proj.lora_A.* "
        r"is \[4, 64\] in the adapter but \[4, 96\] in the model",
        errors[0],
    ), errors[0]

"""Fine-tuning the embedded SmolLM2-135M-Instruct on the seed lab's travel data (slow: a minute or two)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TEMPLATE = r"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>"


@pytest.mark.slow
def test_lora_on_the_embedded_model_lowers_held_out_loss(travel_data, tmp_path):
    from olivepress.api import finetune

    result = finetune(
        "default",
        data_files=str(travel_data),
        text_template=TEMPLATE,
        eval_split=16,
        training_args={
            "max_steps": 8,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-3,
            "eval_steps": 8,
        },
        output_path=tmp_path / "ft",
        cache_dir=tmp_path / "cache",
        summary=False,
    )
    adapter = Path(result.model.adapter_path)
    records = [json.loads(line) for line in (adapter / "training_log.jsonl").read_text().splitlines()]
    end = records[-1]
    assert end["event"] == "end" and end["steps"] == 8
    assert end["eval_loss"] < end["eval_loss_before"] - 0.1, end
    assert end["padding_fraction"] < 0.15
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    assert (tmp_path / "ft" / "model" / "model.safetensors").is_file()
    print(end)


@pytest.mark.slow
def test_two_processes_on_the_embedded_model_match_one(travel_data, tmp_path):
    """`num_processes 2` (gloo, one thread each) against one process with the same global batch:
    the same loss curve within bf16 noise (bf16 where the CPU has it), one adapter."""
    from olivepress.api import finetune

    def run(name: str, **options) -> list[dict]:
        result = finetune(
            "default",
            data_files=str(travel_data),
            text_template=TEMPLATE,
            max_samples=32,
            max_seq_len=128,
            training_args={
                "max_steps": 4,
                "per_device_train_batch_size": 2,
                "gradient_accumulation_steps": 2,
                "learning_rate": 1e-3,
                "logging_steps": 1,
            },
            pass_options={"lora_dropout": 0.0, **options},
            output_path=tmp_path / name,
            cache_dir=tmp_path / "cache",
            summary=False,
        )
        adapter = Path(result.model.adapter_path)
        return [json.loads(line) for line in (adapter / "training_log.jsonl").read_text().splitlines()]

    two, one = run("two", num_processes=2), run("one")
    assert two[-1]["sequences_per_process"] == [8, 8]
    losses_two = [r["loss"] for r in two if r["event"] == "train"]
    losses_one = [r["loss"] for r in one if r["event"] == "train"]
    assert len(losses_two) == 4
    assert losses_two == pytest.approx(losses_one, abs=2e-3), (losses_one, losses_two)
    assert sorted(p.parent.name for p in (tmp_path / "two").rglob("adapter_config.json")) == ["adapter"]
    print({"one": losses_one, "two": losses_two})

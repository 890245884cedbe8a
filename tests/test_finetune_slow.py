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
        "default", data_files=str(travel_data), text_template=TEMPLATE, eval_split=16,
        training_args={"max_steps": 8, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "eval_steps": 8},
        output_path=tmp_path / "ft", cache_dir=tmp_path / "cache", summary=False,
    )
    adapter = Path(result.model.adapter_path)
    records = [json.loads(line) for line in (adapter / "training_log.jsonl").read_text().splitlines()]
    end = records[-1]
    assert end["event"] == "end" and end["steps"] == 8
    assert end["eval_loss"] < end["eval_loss_before"] - 0.1, end
    assert end["padding_fraction"] < 0.15
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert (tmp_path / "ft" / "model" / "model.safetensors").is_file()
    print(end)

"""The Python API called directly (not through the CLI), on tiny models; and the pieces the
commands share with it: targets, the registry's command passes, the CLI's value parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olivepress import api
from olivepress.errors import OlivepressError
from olivepress.targets import PROVIDER_DEVICES, canonical_provider, resolve_target
from tiny_models import save_tiny_lora_adapter


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


# --- quantize -------------------------------------------------------------------------------


def test_quantize_writes_a_checkpoint_with_calibration_data_given_as_a_dict(tmp_path, tiny_llama_dir):
    rows = [{"text": f"sample {i} of calibration text"} for i in range(8)]
    data = write_jsonl(tmp_path / "calib.jsonl", rows)
    result = api.quantize(
        str(tiny_llama_dir),
        algorithm="rtn",
        group_size=32,
        output_path=tmp_path / "out",
        modules_to_not_convert=["down_proj"],
        cache_dir=tmp_path / "cache",
        summary=False,
        calibration_data={
            "name": "calibration",
            "load_dataset_config": {"data_name": "json", "data_files": str(data)},
            "pre_process_data_config": {"text_field": "text"},
        },
    )
    config = json.loads((Path(result.model.path) / "config.json").read_text())
    quant = config["quantization_config"]
    assert quant["bits"] == 4 and quant["group_size"] == 32
    assert "down_proj" in json.dumps(quant)  # left in float, and the checkpoint says so


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"algorithm": "awk"}, r"unknown algorithm 'awk' \(did you mean 'awq'\?\); choose awq, gptq or rtn"),
        ({"precision": "int3"}, r"--precision int3 is not a weight-only precision"),
    ],
)
def test_quantize_refuses_what_it_cannot_write(tmp_path, tiny_llama_dir, options, message):
    with pytest.raises(OlivepressError, match=message):
        api.quantize(str(tiny_llama_dir), output_path=tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


# --- finetune -------------------------------------------------------------------------------


def test_finetune_takes_a_list_of_files_and_a_numeric_eval_split(tmp_path, tiny_llama_dir):
    rows = [{"prompt": f"question {i}", "response": f"answer {i}"} for i in range(12)]
    first = write_jsonl(tmp_path / "a.jsonl", rows[:6])
    second = write_jsonl(tmp_path / "b.jsonl", rows[6:])
    result = api.finetune(
        str(tiny_llama_dir),
        data_files=[first, second],
        text_template="{prompt} {response}",
        eval_split=4,
        pass_options={"lora_r": 4, "target_modules": ["q_proj", "v_proj"]},
        training_args={"max_steps": 1, "per_device_train_batch_size": 2, "eval_steps": 1},
        output_path=tmp_path / "ft",
        cache_dir=tmp_path / "cache",
        summary=False,
        log_level=3,
    )
    adapter = Path(result.model.adapter_path)
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    log = [json.loads(line) for line in (adapter / "training_log.jsonl").read_text().splitlines()]
    assert any("eval_loss" in record for record in log)


def test_finetune_unknown_method_names_the_registered_ones(tmp_path, tiny_llama_dir):
    message = r"unknown finetune method 'lorra'.*choose one of lora, qlora, dora, loha, lokr"
    with pytest.raises(OlivepressError, match=message):
        api.finetune(str(tiny_llama_dir), method="lorra", data_files="x.jsonl", output_path=tmp_path / "ft")


# --- auto_opt and convert_adapters ------------------------------------------------------------


def test_auto_opt_plans_the_builder_path_with_the_check(tmp_path, tiny_llama_dir, tiny_lora_dir):
    from olivepress.workflow.auto_opt import plan_auto_opt

    plan = plan_auto_opt(
        str(tiny_llama_dir),
        adapter_path=tiny_lora_dir,
        adapter_name="travel",
        provider="cpu",
        output_path=tmp_path / "out",
        cache_dir=tmp_path / "cache",
    )
    passes = plan.config["passes"]
    assert [spec["type"] for spec in passes.values()] == ["ModelBuilder", "ExtractAdapters"]
    assert passes["builder"]["execution_provider"] == "CPUExecutionProvider"
    assert passes["extract_adapters"]["adapter_name"] == "travel"
    assert plan.config["systems"]["target"]["accelerators"] == [
        {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}
    ]
    assert plan.check is not None
    assert plan.messages[0].startswith("auto-opt: LlamaForCausalLM on the ORT GenAI path")


def test_auto_opt_plans_the_generic_path_unverified_for_an_absent_provider(tmp_path, tiny_bert_dir):
    from olivepress.workflow.auto_opt import plan_auto_opt

    plan = plan_auto_opt(
        str(tiny_bert_dir),
        provider="qnn",
        precision="int8",
        output_path=tmp_path / "out",
        cache_dir=tmp_path / "cache",
    )
    passes = [spec["type"] for spec in plan.config["passes"].values()]
    assert passes == ["OnnxConversion", "OnnxStaticQuantization"]
    assert plan.check is None
    assert "not verified" in plan.messages[-1]
    assert "QNNExecutionProvider is not available" in plan.messages[-1]


def test_auto_opt_refuses_a_provider_for_another_device(tmp_path, tiny_llama_dir):
    message = "--provider CUDAExecutionProvider runs on gpu, not on --device npu"
    with pytest.raises(OlivepressError, match=message):
        api.auto_opt(str(tiny_llama_dir), device="npu", provider="cuda", output_path=tmp_path / "out")


def test_auto_opt_then_convert_adapters(tmp_path, tiny_llama_dir, tiny_lora_dir):
    from olivepress.runtime.generate import GenAIModel

    result = api.auto_opt(
        str(tiny_llama_dir),
        adapter_path=tiny_lora_dir,
        precision="fp32",
        output_path=tmp_path / "onnx",
        cache_dir=tmp_path / "cache",
        summary=False,
        log_level=3,
    )
    check = result.footprint.checks[str(result.flows[0].output_dir)]
    variants = {variant["adapter"]: variant for variant in check["variants"]}
    assert set(variants) == {"base", "default"}
    assert all(variant["top1_agreement"] == 1.0 for variant in variants.values())

    second = save_tiny_lora_adapter(tiny_llama_dir, tmp_path / "second", seed=3)
    written = api.convert_adapters(second, tmp_path / "onnx", tmp_path / "second.onnx_adapter", name="second")
    assert written == tmp_path / "second.onnx_adapter"
    model = GenAIModel(tmp_path / "onnx")  # the registered name is found without naming the file
    assert "second" in model.adapter_names
    ids = [1, 5, 9, 14]
    changed = model.next_token_logits(ids, adapter="second") - model.next_token_logits(ids, adapter="base")
    assert abs(changed).max() > 1e-3
    with pytest.raises(OlivepressError, match=r"should end in \.onnx_adapter"):
        api.convert_adapters(second, tmp_path / "onnx", tmp_path / "second.bin")


# --- evaluate and benchmark ----------------------------------------------------------------


def _size_goal_config(model: Path, output_dir: Path, limit_mb: float) -> dict:
    goal = {"type": "threshold", "value": limit_mb}
    metric = {"name": "size", "type": "size_on_disk", "sub_types": [{"name": "size_mb", "goal": goal}]}
    return {
        "input_model": {"type": "HfModel", "model_path": str(model)},
        "evaluators": {"e": {"metrics": [metric]}},
        "evaluator": "e",
        "output_dir": str(output_dir),
    }


def test_evaluate_checks_threshold_goals_and_writes_the_metrics(tmp_path, tiny_llama_dir):
    fits = api.evaluate(_size_goal_config(tiny_llama_dir, tmp_path / "out", 1000.0), summary=False)
    assert fits.goals_met and fits.output_path == tmp_path / "out" / "metrics.json"
    size = fits.metrics["size.size_mb"].value
    files = [f for f in tiny_llama_dir.rglob("*") if f.is_file()]
    assert size == pytest.approx(sum(f.stat().st_size for f in files) / 1e6)

    too_big = api.evaluate(
        _size_goal_config(tiny_llama_dir, tmp_path / "out", size / 2),
        output_path=tmp_path / "m.json",
        summary=False,
    )
    assert not too_big.goals_met and too_big.goals["size.size_mb"].endswith("MISSED")
    assert json.loads((tmp_path / "m.json").read_text())["goals"] == too_big.goals


def test_evaluate_without_an_evaluator_says_so(tmp_path, tiny_llama_dir):
    config = {"input_model": {"model_path": str(tiny_llama_dir)}, "output_dir": str(tmp_path)}
    with pytest.raises(OlivepressError, match="the workflow has no evaluator"):
        api.evaluate(config)


def test_benchmark_takes_an_evaluator_config_and_records_the_settings(tmp_path, tiny_llama_dir):
    out = tmp_path / "bench.json"
    evaluation = api.benchmark(
        str(tiny_llama_dir),
        evaluator={"metrics": [{"name": "size_on_disk", "type": "size_on_disk"}]},
        output_path=out,
        settings={"asked": "size"},
        summary=False,
    )
    written = json.loads(out.read_text())
    assert written["settings"] == {"asked": "size"}
    size = evaluation.metrics["size_on_disk.size_mb"].value
    assert written["metrics"]["size_on_disk.size_mb"]["value"] == size > 0


# --- what the commands share ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "provider", "expected"),
    [
        (None, None, ("cpu", "CPUExecutionProvider")),
        ("gpu", None, ("gpu", "CUDAExecutionProvider")),
        (None, "tensorrt", ("gpu", "TensorrtExecutionProvider")),
        (None, "qnnexecutionprovider", ("npu", "QNNExecutionProvider")),
        ("cpu", "OpenVINO", ("cpu", "OpenVINOExecutionProvider")),  # OpenVINO runs on several devices
    ],
)
def test_resolve_target(device, provider, expected):
    assert resolve_target(device, provider) == expected


def test_unknown_provider_suggests_one():
    message = r"unknown execution provider 'CUDAExecutionProvidr' \(did you mean"
    with pytest.raises(OlivepressError, match=message):
        resolve_target(None, "CUDAExecutionProvidr")


def test_every_chain_and_builder_provider_is_a_known_target():
    from olivepress.passes.onnx.chains import TARGETS
    from olivepress.passes.onnx.model_builder import BUILDER_PROVIDERS

    for provider in [*(target.provider for target in TARGETS.values()), *BUILDER_PROVIDERS]:
        assert provider in PROVIDER_DEVICES
        assert canonical_provider(provider.lower()) == provider


def test_command_passes_come_from_the_registry():
    from olivepress.passes.registry import command_passes, find_pass
    from olivepress.passes.torch.lora import METHODS

    assert command_passes("quantize") == {"awq": "AWQ", "gptq": "GPTQ", "rtn": "RTN"}
    assert list(METHODS) == ["lora", "qlora", "dora", "loha", "lokr"]
    for name in METHODS.values():
        assert find_pass(name).name == name


@pytest.mark.parametrize(
    ("text", "value"), [("0.1", 0.1), ("20", 20), ("20.0", 20.0), ("train[90%:]", "train[90%:]")]
)
def test_eval_split_flag_becomes_a_number_or_a_split(text, value):
    from olivepress.cli.finetune import eval_split

    parsed = eval_split(text)
    assert parsed == value and type(parsed) is type(value)

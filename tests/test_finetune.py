"""Adapter fine-tuning (LoRA, QLoRA, DoRA, LoHa, LoKr) on the tiny Llama: training, outputs,
determinism, cache, MergeAdapterWeights, options. A few seconds each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olivepress.api import run
from olivepress.errors import OlivepressError
from olivepress.workflow.load import load_workflow

TEMPLATE = "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>"
PAIRS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("What is the capital of Italy?", "Rome is the capital of Italy."),
    ("What should I see in Chicago?", "The lakefront and the architecture."),
    ("How should I travel?", "Travel light, book early, and carry a map of the city."),
]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """Four short pairs repeated: a model can learn them in a few steps."""
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in PAIRS * 4))
    return path


def data_config(path: Path, **pre) -> dict:
    return {
        "name": "pairs",
        "load_dataset_config": {"data_files": str(path)},
        "pre_process_data_config": {"text_template": TEMPLATE, "corpus_strategy": "line-by-line", **pre},
    }


def workflow(model_dir: Path, data: Path, tmp: Path, pass_type: str = "LoRA", **options) -> dict:
    training_args = {
        "max_steps": 8,
        "learning_rate": 1e-2,
        "logging_steps": 1,
        "per_device_train_batch_size": 4,
    }
    training_args.update(options.pop("training_args", {}))
    return {
        "input_model": {"model_path": str(model_dir)},
        "data_configs": [data_config(data)],
        "passes": {
            "ft": {"type": pass_type, "train_data_config": "pairs", "training_args": training_args, **options}
        },
        "output_dir": str(tmp / "out"),
        "cache_dir": str(tmp / "cache"),
    }


def train_losses(adapter_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (adapter_dir / "training_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["event"] == "train"]


def adapter_tensors(adapter_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(adapter_dir / "adapter_model.safetensors")


def logits(model, text_ids):
    import torch

    with torch.no_grad():
        return model(input_ids=text_ids).logits


@pytest.mark.parametrize(
    ("pass_type", "options", "learning_rate"),
    [
        ("LoRA", {}, 1e-2),
        ("QLoRA", {}, 1e-2),
        ("DoRA", {}, 1e-2),
        # LoHa and LoKr start from a product of small factors: they need a larger step to move.
        ("LoHa", {"lora_r": 4, "lora_alpha": 8}, 3e-2),
        ("LoKr", {"lora_r": 4, "lora_alpha": 8}, 3e-2),
    ],
)
def test_each_method_trains_and_its_loss_falls(
    tiny_llama_dir, small_data, tmp_path, pass_type, options, learning_rate
):
    args = {"learning_rate": learning_rate, "lr_scheduler_type": "constant"}
    result = run(
        workflow(tiny_llama_dir, small_data, tmp_path, pass_type, training_args=args, **options),
        summary=False,
    )
    adapter = Path(result.model.adapter_path)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (
        config["peft_type"]
        == {"LoRA": "LORA", "QLoRA": "LORA", "DoRA": "LORA", "LoHa": "LOHA", "LoKr": "LOKR"}[pass_type]
    )
    assert config.get("use_dora", False) is (pass_type == "DoRA")
    losses = train_losses(adapter)
    assert len(losses) == 8
    # The tiny model starts near ln(vocab) = 5.95; a tenth of a nat in 8 steps is well above noise.
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.1, losses


def test_output_layout_is_the_seed_labs(tiny_llama_dir, small_data, tmp_path):
    result = run(workflow(tiny_llama_dir, small_data, tmp_path), summary=False)
    out = tmp_path / "out"
    assert result.model.path == str(out / "model") and result.model.adapter_path == str(out / "adapter")
    # model/ is the base the adapter trained on, unchanged; adapter/ a PEFT folder with the log.
    assert (out / "model" / "config.json").read_text() == (tiny_llama_dir / "config.json").read_text()
    assert (out / "model" / "tokenizer.json").is_file()
    assert {"adapter_config.json", "adapter_model.safetensors", "training_log.jsonl"} <= {
        p.name for p in (out / "adapter").iterdir()
    }
    assert (out / "footprint.json").is_file()
    records = [json.loads(line) for line in (out / "adapter" / "training_log.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "start" and records[-1]["event"] == "end"
    assert records[0]["total_steps"] == 8 and records[-1]["steps"] == 8


def test_adapter_loads_with_peft_and_changes_logits(tiny_llama_dir, small_data, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = run(workflow(tiny_llama_dir, small_data, tmp_path), summary=False)
    ids = torch.tensor([[1, 5, 17, 42, 99, 3]])
    base = AutoModelForCausalLM.from_pretrained(result.model.path).eval()
    before = logits(base, ids)
    tuned = PeftModel.from_pretrained(base, result.model.adapter_path).eval()
    assert (logits(tuned, ids) - before).abs().max() > 1e-2


def test_same_seed_same_adapter_other_seed_other_adapter(tiny_llama_dir, small_data, tmp_path):
    import torch

    def adapter(name: str, seed: int) -> dict:
        # full_determinism: one thread count throughout (the thread tuner may otherwise switch it,
        # which reorders some float sums).
        args = {"max_steps": 3, "seed": seed, "full_determinism": True}
        config = workflow(tiny_llama_dir, small_data, tmp_path / name, training_args=args)
        return adapter_tensors(Path(run(config, summary=False).model.adapter_path))

    first, again, other = adapter("a", 1), adapter("b", 1), adapter("c", 2)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_gradient_checkpointing_is_on_by_default_and_changes_no_result(tiny_llama_dir, small_data, tmp_path):
    """Checkpointing recomputes each layer's activations in backward (less memory); the
    gradients, and so the adapter, are the same as without it."""
    import torch

    def train(name: str, **extra) -> Path:
        args = {"max_steps": 3, "full_determinism": True, **extra}
        config = workflow(tiny_llama_dir, small_data, tmp_path / name, training_args=args)
        return Path(run(config, summary=False).model.adapter_path)

    default, off = train("default"), train("off", gradient_checkpointing=False)
    starts = [
        json.loads((adapter / "training_log.jsonl").read_text().splitlines()[0]) for adapter in (default, off)
    ]
    assert [start["gradient_checkpointing"] for start in starts] == [True, False]
    assert train_losses(default) == pytest.approx(train_losses(off), rel=1e-5)
    with_it, without = adapter_tensors(default), adapter_tensors(off)
    assert all(torch.allclose(with_it[k], without[k], atol=1e-6) for k in with_it)


def test_a_rerun_is_a_cache_hit(tiny_llama_dir, small_data, tmp_path):
    config = workflow(tiny_llama_dir, small_data, tmp_path, training_args={"max_steps": 2})
    assert not run(config, summary=False).flows[0].nodes[0].from_cache
    again = run(config, summary=False)
    assert again.flows[0].nodes[0].from_cache
    assert (Path(again.model.adapter_path) / "adapter_model.safetensors").is_file()


def test_lora_then_merge_adapter_weights_gives_peft_logits(tiny_llama_dir, small_data, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = workflow(tiny_llama_dir, small_data, tmp_path, training_args={"max_steps": 4})
    config["passes"]["merge"] = {"type": "MergeAdapterWeights"}
    result = run(config, summary=False)
    lora_node = result.flows[0].nodes[0]
    merged = AutoModelForCausalLM.from_pretrained(result.model.path).eval()
    peft_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir), lora_node.model["adapter_path"]
    ).eval()
    ids = torch.tensor([[1, 5, 17, 42, 99, 3, 250]])
    reference = logits(peft_model, ids)
    torch.testing.assert_close(logits(merged, ids), reference, atol=1e-4, rtol=1e-4)


def test_eval_split_gives_eval_loss_before_and_after(tiny_llama_dir, small_data, tmp_path):
    config = workflow(
        tiny_llama_dir, small_data, tmp_path, eval_dataset_size=4, training_args={"eval_steps": 4}
    )
    adapter = Path(run(config, summary=False).model.adapter_path)
    records = [json.loads(line) for line in (adapter / "training_log.jsonl").read_text().splitlines()]
    evals = [(r["step"], r["eval_loss"]) for r in records if r["event"] == "eval"]
    assert [step for step, _ in evals] == [0, 4, 8]
    assert evals[-1][1] < evals[0][1]
    assert records[0]["eval_sequences"] == 4 and records[0]["sequences"] == 12


def test_seed_lora_snippet_plans_the_lora_pass(caplog):
    raw = json.loads((Path(__file__).parent / "seed001" / "passes_lora.json").read_text())
    planned = load_workflow(raw).flows[0][0]
    assert (planned.name, planned.spec.name) == ("lora", "LoRA")
    config = planned.config
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (64, 64, 0.1)
    assert config.target_modules == ["o_proj", "qkv_proj"] and config.double_quant is True
    assert config.train_data_config == "dataset_default_train" and config.eval_dataset_size == 0.3
    args = config.training_args
    assert args.eval_strategy == "steps" and args.eval_steps == 187 and args.max_grad_norm == 0.3
    assert (args.seed, args.data_seed, args.gradient_accumulation_steps, args.group_by_length) == (
        0,
        42,
        4,
        True,
    )


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        (
            {"training_args": {"learning_rat": 1e-3}},
            r"unknown key 'learning_rat' in passes.ft.training_args \(did you mean 'learning_rate'\?\)",
        ),
        ({"training_args": {"max_steps": 0}}, "max_steps is 0; give a positive number"),
        ({"training_args": {"optim": "adafactor"}}, "optim 'adafactor' is not supported"),
        ({"lora_rank": 8}, r"unknown key 'lora_rank' in passes.ft"),
        ({"r": 8, "lora_r": 4}, "'r' and 'lora_r' are the same option"),
        (
            {"training_args": {"evaluation_strategy": "no", "eval_strategy": "steps"}},
            "evaluation_strategy and eval_strategy",
        ),
    ],
)
def test_bad_options_are_clear_errors(tmp_path, options, pattern):
    config = {"passes": {"ft": {"type": "LoRA", "train_data_config": "d", **options}}}
    with pytest.raises(OlivepressError, match=pattern):
        load_workflow(config)


def test_spellings_of_the_seed_and_of_peft_are_accepted():
    options = {
        "type": "lora",
        "train_data_config": "d",
        "r": 8,
        "alpha": 16,
        "target_modules": "q_proj, v_proj",
        "training_args": {"evaluation_strategy": "epoch", "save_steps": 5, "report_to": "none"},
    }
    config = load_workflow({"passes": {"ft": options}}).flows[0][0].config
    assert (config.lora_r, config.lora_alpha, config.target_modules) == (8, 16, ["q_proj", "v_proj"])
    assert config.training_args.eval_strategy == "epoch"
    assert config.training_args.ignored == {"save_steps": 5, "report_to": "none"}
    assert "save_steps" not in config.model_dump()["training_args"]  # no effect, so not in the cache key


def test_ignored_hf_args_and_double_quant_on_lora_warn(tiny_llama_dir, small_data, tmp_path, capsys):
    config = workflow(
        tiny_llama_dir,
        small_data,
        tmp_path,
        double_quant=True,
        training_args={"max_steps": 1, "save_steps": 5},
    )
    run(config, summary=False, log_level=2)
    err = capsys.readouterr().err
    assert "warning: training_args save_steps have no effect" in err
    assert "warning: double_quant has no effect on a LoRA pass" in err


def test_a_target_module_the_model_lacks_is_named(tiny_llama_dir, small_data, tmp_path):
    config = workflow(tiny_llama_dir, small_data, tmp_path, target_modules=["o_proj", "qkv_proj"])
    with pytest.raises(
        OlivepressError,
        match="target module 'qkv_proj' is not a Linear layer of this llama model.*q_proj, k_proj",
    ):
        run(config, summary=False)


def test_an_input_model_with_an_adapter_is_refused(tiny_llama_dir, tiny_lora_dir, small_data, tmp_path):
    config = workflow(tiny_llama_dir, small_data, tmp_path)
    config["input_model"]["adapter_path"] = str(tiny_lora_dir)
    with pytest.raises(OlivepressError, match="already has an adapter.*MergeAdapterWeights"):
        run(config, summary=False)


def test_on_a_quantized_base_the_output_model_is_that_checkpoint(tiny_llama_dir, small_data, tmp_path):
    """The seed lab's order: quantize, then train the adapter against the quantized grid."""
    from olivepress.passes.registry import find_pass

    try:
        find_pass("RTN")
    except OlivepressError:
        pytest.skip("no RTN pass registered")
    config = workflow(tiny_llama_dir, small_data, tmp_path, training_args={"max_steps": 2})
    config["passes"] = {"rtn": {"type": "RTN", "group_size": 32}, **config["passes"]}
    result = run(config, summary=False)
    quant = json.loads((Path(result.model.path) / "config.json").read_text()).get("quantization_config") or {}
    assert quant.get("quant_method") in ("awq", "gptq")
    assert (Path(result.model.adapter_path) / "adapter_model.safetensors").is_file()

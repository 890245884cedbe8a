"""The training core (olivepress.train): batching, loss, precision, targets. No training runs here
beyond a step or two; each test takes a second or less."""

from __future__ import annotations

import pytest

from olivepress.data.tokenize import IGNORE_INDEX
from olivepress.errors import OlivepressError
from olivepress.train.args import TrainingArgs
from olivepress.train.micro_batches import collate, epoch_batches
from tiny_models import TINY_FAMILIES, save_tiny_decoder


def examples(lengths: list[int]) -> list[dict[str, list[int]]]:
    return [{"input_ids": list(range(3, 3 + n)), "labels": list(range(3, 3 + n))} for n in lengths]


def test_length_grouped_batches_hold_every_sequence_once_with_little_padding():
    import random

    lengths = [random.Random(i).randint(5, 120) for i in range(200)]
    batches = epoch_batches(examples(lengths), 8, seed=0)
    seen = sorted(
        int((b.labels != IGNORE_INDEX).sum(dim=1)[i]) for b in batches for i in range(b.input_ids.shape[0])
    )
    assert seen == sorted(lengths)
    padding = sum(b.num_tokens for b in batches) - sum(lengths)
    assert padding / sum(lengths) < 0.05
    unsorted = epoch_batches(examples(lengths), 8, seed=0, group_by_length=False)
    assert sum(b.num_tokens for b in unsorted) - sum(lengths) > 5 * padding


def test_batches_depend_only_on_the_seed():
    data = examples([5, 9, 7, 30, 2, 11, 13, 4, 8])
    first, again, other = (epoch_batches(data, 2, seed=s) for s in (1, 1, 2))
    assert [b.input_ids.tolist() for b in first] == [b.input_ids.tolist() for b in again]
    assert [b.input_ids.tolist() for b in first] != [b.input_ids.tolist() for b in other]


def test_padding_is_masked_and_never_a_target():
    batch = collate(examples([3, 5]), pad_id=2)
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch.labels[0].tolist() == [3, 4, 5, IGNORE_INDEX, IGNORE_INDEX]
    assert batch.num_targets == 2 + 4
    assert collate(examples([4, 4]), pad_id=2).attention_mask is None  # equal lengths: no mask needed


def test_rows_padded_by_the_tokenizer_are_trimmed():
    row = {
        "input_ids": [5, 6, 7, 2, 2],
        "labels": [5, 6, 7, IGNORE_INDEX, IGNORE_INDEX],
        "attention_mask": [1, 1, 1, 0, 0],
    }
    batch = collate([row], pad_id=2)
    assert batch.input_ids.tolist() == [[5, 6, 7]] and batch.attention_mask is None


@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_summed_loss_equals_the_models_own_loss(family, tmp_path):
    """The head on labelled positions only (soft-capped where the config says so: Gemma-2) gives
    the model's own loss, for every family."""
    import torch
    from transformers import AutoModelForCausalLM

    from olivepress.train.loss import summed_loss

    model = AutoModelForCausalLM.from_pretrained(save_tiny_decoder(tmp_path, family)).eval()
    if getattr(model.config, "final_logit_softcapping", None):
        model.config.final_logit_softcapping = 0.05  # below the tiny logits, so the cap really bites
    batch = collate(examples([12, 7]), pad_id=2)
    with torch.no_grad():
        ours = summed_loss(model, batch) / batch.num_targets
        labels = batch.labels.clone()
        theirs = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_default_targets_per_architecture(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM, Phi3Config, Phi3ForCausalLM

    from olivepress.passes.torch.lora.targets import resolve_targets

    llama = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert resolve_targets(llama, None) == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    assert resolve_targets(llama, ["q_proj", "v_proj"]) == ["q_proj", "v_proj"]
    torch.manual_seed(0)
    phi3 = Phi3ForCausalLM(
        Phi3Config(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=4,
            pad_token_id=0,
        )
    )
    assert resolve_targets(phi3, None) == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert "lm_head" not in resolve_targets(phi3, ["all-linear"])
    with pytest.raises(
        OlivepressError, match="target module 'q_proj' is not a Linear layer of this phi3 model"
    ):
        resolve_targets(phi3, ["q_proj"])


def test_bf16_is_used_only_where_the_cpu_has_it(monkeypatch):
    import torch

    from olivepress.train import device as device_module

    cpu = torch.device("cpu")
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    assert device_module.autocast_dtype(TrainingArgs(), cpu) is None
    assert device_module.autocast_dtype(TrainingArgs(bf16=True), cpu) is torch.bfloat16
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    assert device_module.autocast_dtype(TrainingArgs(), cpu) is torch.bfloat16
    assert device_module.autocast_dtype(TrainingArgs(bf16=False), cpu) is None
    with pytest.raises(OlivepressError, match="fp16 mixed precision needs a GPU"):
        device_module.autocast_dtype(TrainingArgs(fp16=True), cpu)


def test_gradient_accumulation_weighs_every_token_the_same(tiny_llama_dir):
    """Two micro-batches of an accumulated step give the gradient of one batch holding both."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from olivepress.train.loss import summed_loss

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
        LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False),
    )
    rows = examples([20, 6])

    def grads(batches):
        model.zero_grad()
        targets = sum(b.num_targets for b in batches)
        for b in batches:
            (summed_loss(model, b) / targets).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])

    torch.testing.assert_close(
        grads([collate(rows[:1], 2), collate(rows[1:], 2)]), grads([collate(rows, 2)]), atol=1e-6, rtol=1e-4
    )


def test_thread_tuner_drops_to_one_thread_only_when_it_is_faster():
    import time

    import torch

    from olivepress.train.device import ThreadTuner

    def slow_on_many_threads():
        time.sleep(0.05 if torch.get_num_threads() > 1 else 0.01)

    threads = torch.get_num_threads()
    busy = ThreadTuner(2, fixed=False, recheck=50)
    assert "1 thread: it ran" in busy.calibrate(slow_on_many_threads)
    assert torch.get_num_threads() == threads  # calibrating leaves the thread count as it was
    assert [busy.threads_for(step) for step in (1, 2, 49, 50, 51, 52)] == [1, 1, 1, 2, 1, 1]
    assert busy.observe(50, tokens=100, seconds=1.0) is None
    assert "again" in busy.observe(51, tokens=100, seconds=1.1)
    assert busy.threads_for(52) == 2

    free = ThreadTuner(2, fixed=False)
    free.observe(50, tokens=100, seconds=1.0)
    assert free.observe(51, tokens=100, seconds=1.9) is None and free.threads_for(52) == 2
    fixed = ThreadTuner(2, fixed=True)
    assert fixed.calibrate(slow_on_many_threads) is None
    assert [fixed.threads_for(step) for step in (1, 50, 51)] == [2, 2, 2]

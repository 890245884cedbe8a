"""Fine-tuning on several processes (torch.distributed, gloo on the CPU): `finetune --num_processes 2`
on the tiny Llama trains on both processes, matches one process with the same global batch, and
writes one adapter; a failing process is one line. The launches take a few seconds each (two
Python processes start and meet); the rest runs in this process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_cli import assert_one_line_error, olivepress

TEMPLATE = r"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>"


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "adapter" / "training_log.jsonl").read_text().splitlines()]


def finetune(model: Path, data: Path, out: Path, **options):
    """`olivepress finetune` as its Python API (the CLI's flags are passed through unchanged), in
    this process: only the two training processes pay for starting Python."""
    from olivepress.api import finetune as api_finetune

    # fp32 and no dropout: the one- and two-process runs then differ only in the order of float sums.
    training_args = {
        "max_steps": 4,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "learning_rate": 1e-2,
        "logging_steps": 1,
        "bf16": False,
        "eval_steps": 2,
        "full_determinism": True,
    }
    return api_finetune(
        str(model),
        data_files=str(data),
        text_template=TEMPLATE.replace(r"\n", "\n"),
        max_samples=48,
        eval_split=8,
        training_args=training_args,
        pass_options={"lora_dropout": 0.0, **options},
        output_path=out,
        cache_dir=out.parent / "cache",
        summary=False,
    )


def test_two_processes_train_like_one_with_the_same_global_batch(tiny_llama_dir, travel_data, tmp_path):
    finetune(tiny_llama_dir, travel_data, tmp_path / "two", num_processes=2)
    finetune(tiny_llama_dir, travel_data, tmp_path / "one")

    log_two, log_one = records(tmp_path / "two"), records(tmp_path / "one")
    start, end = log_two[0], log_two[-1]
    # Written once, by process 0: one start and one end record, not one per process.
    events = [r["event"] for r in log_two]
    assert events.count("start") == 1 and events.count("end") == 1
    assert start["processes"] == 2 and start["micro_batches_per_process"] == 1
    assert "processes" not in log_one[0]
    # Both processes trained: 4 steps x 2 micro-batches of 4 = 32 sequences, 16 each.
    assert end["sequences_per_process"] == [16, 16], end
    assert sum(end["tokens_per_process"]) == end["train_tokens"] == log_one[-1]["train_tokens"]

    runs = {"1": log_one, "2": log_two}
    losses = {name: [r["loss"] for r in log if r["event"] == "train"] for name, log in runs.items()}
    evals = {name: [r["eval_loss"] for r in log if r["event"] == "eval"] for name, log in runs.items()}
    assert len(losses["2"]) == 4 and len(evals["2"]) == 3
    assert losses["2"] == pytest.approx(losses["1"], abs=1e-5), losses
    assert evals["2"] == pytest.approx(evals["1"], abs=1e-5), evals
    assert losses["2"][-1] < losses["2"][0]

    adapters = sorted(p.parent.name for p in (tmp_path / "two").rglob("adapter_config.json"))
    assert adapters == ["adapter"]
    from safetensors.torch import load_file

    tensors_two = load_file(tmp_path / "two" / "adapter" / "adapter_model.safetensors")
    tensors_one = load_file(tmp_path / "one" / "adapter" / "adapter_model.safetensors")
    assert tensors_two.keys() == tensors_one.keys()
    assert all((tensors_two[k] - tensors_one[k]).abs().max() < 1e-5 for k in tensors_one)


def test_two_machines_meet_on_loopback_and_node_0_writes_the_adapter(tiny_llama_dir, travel_data, tmp_path):
    """--nnodes 2: two `finetune` commands (two "machines" on 127.0.0.1, one process each) train
    together through torchrun's static rendezvous; only node 0's output has the adapter."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    common = [
        "finetune",
        "-m",
        str(tiny_llama_dir),
        "--data_files",
        str(travel_data),
        "--text_template",
        TEMPLATE,
        "--max_samples",
        "32",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "2",
        "--nnodes",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "--log_level",
        "2",
    ]
    node_1 = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "olivepress",
            *common,
            "--node_rank",
            "1",
            "-o",
            str(tmp_path / "n1"),
            "--cache_dir",
            str(tmp_path / "c1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        node_0 = olivepress(
            *common, "--node_rank", "0", "-o", str(tmp_path / "n0"), "--cache_dir", str(tmp_path / "c0")
        )
        _, node_1_err = node_1.communicate(timeout=300)
    finally:
        if node_1.poll() is None:  # node 0 failed: node 1 would wait for it until its rendezvous times out
            node_1.kill()
            node_1.wait()
    assert node_0.returncode == 0, node_0.stderr
    assert node_1.returncode == 0, node_1_err
    end = records(tmp_path / "n0")[-1]
    assert end["sequences_per_process"] == [4, 4], end
    assert not (tmp_path / "n1" / "adapter").exists()


def test_a_failing_process_is_one_line_and_leaves_no_output(tiny_llama_dir, travel_data, tmp_path):
    out = tmp_path / "out"
    result = olivepress(
        "finetune",
        "-m",
        str(tiny_llama_dir),
        "--data_files",
        str(travel_data),
        "--text_template",
        TEMPLATE,
        "--num_processes",
        "2",
        "--target_modules",
        "q_proj,nope",
        "--max_steps",
        "1",
        "-o",
        str(out),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--log_level",
        "3",
    )
    assert_one_line_error(
        result, r"training process [01] of 2 failed: target module 'nope' is not a Linear layer"
    )
    assert not out.exists()
    assert not list((tmp_path / "cache").rglob("adapter_config.json"))


@pytest.mark.parametrize(
    ("flags", "pattern"),
    [
        (["--num_processes", "0"], r"num_processes is 0; give 1 or more"),
        (["--nnodes", "2"], r"nnodes is 2 but master_addr is not set"),
        (
            ["--nnodes", "2", "--node_rank", "2", "--master_addr", "10.0.0.1"],
            r"node_rank is 2 but nnodes is 2",
        ),
    ],
)
def test_bad_process_flags_are_one_line(tiny_llama_dir, travel_data, tmp_path, flags, pattern):
    result = olivepress(
        "finetune",
        "-m",
        str(tiny_llama_dir),
        "--data_files",
        str(travel_data),
        "--text_template",
        TEMPLATE,
        "-o",
        str(tmp_path / "out"),
        *flags,
    )
    assert_one_line_error(result, pattern)


def test_row_slices_of_a_micro_batch_give_its_gradient(tiny_llama_dir):
    """When the accumulation steps do not divide by the processes, each takes a slice of the
    rows of every micro-batch: the slices' gradients sum to the whole micro-batch's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from olivepress.train.loss import summed_loss
    from olivepress.train.micro_batches import collate
    from olivepress.train.world import World

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
        LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False),
    )
    rows = [{"input_ids": list(range(3, 3 + n)), "labels": list(range(3, 3 + n))} for n in (20, 6, 13)]
    batch = collate(rows, pad_id=2)

    def gradient(batches) -> torch.Tensor:
        model.zero_grad()
        for part in batches:
            (summed_loss(model, part) / batch.num_targets).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])

    shares = [World(rank=rank, size=2).share([batch]) for rank in (0, 1)]
    assert [[part.input_ids.shape[0] for _, part in share] for share in shares] == [[2], [1]]
    second = shares[1][0][1]
    assert second.attention_mask is None and second.input_ids.shape[1] == 13  # its own width, no padding
    torch.testing.assert_close(
        gradient([part for share in shares for _, part in share]), gradient([batch]), atol=1e-6, rtol=1e-4
    )
    # Whole micro-batches when they divide evenly: process 1 of 2 takes the second half of the step.
    assert [index for index, _ in World(rank=1, size=2).share([batch] * 4)] == [2, 3]


def test_the_reported_failure_is_a_process_own_not_a_lost_peer(tmp_path):
    """A process whose collective broke because another died reports PeerLost; the other's own
    error is the one the user sees, even when the PeerLost was recorded first."""
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from olivepress.train.launch import first_failure

    def failure(rank: int, message: str, timestamp: int) -> ProcessFailure:
        path = tmp_path / f"error-{rank}.json"
        data = {"message": {"message": message, "extraInfo": {"timestamp": str(timestamp)}}}
        path.write_text(json.dumps(data))
        return ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=1, error_file=str(path))

    failures = {
        0: failure(0, "PeerLost: another training process stopped first (Connection closed)", 10),
        1: failure(1, "OlivepressError: the data set is empty", 11),
    }
    assert first_failure(failures) == (1, "the data set is empty")

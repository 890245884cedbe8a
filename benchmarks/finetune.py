"""LoRA fine-tuning on a CPU: does the adapter help, and how fast is olivepress next to HF Trainer?

On the embedded SmolLM2-135M-Instruct (AWQ-quantized first when the AWQ pass is registered,
else the float model) and the seed lab's travel Q&A data, with SmolLM2's own chat tokens:

1. The adapter helps: eval loss on held-out travel pairs, and ROUGE-L of greedy answers to the
   held-out prompts against their reference answers, base model vs fine-tuned.
2. Throughput: one epoch over the training pairs with `olivepress` (LoRA pass) and with a plain
   HF `Trainer` + PEFT baseline doing what Olive does by default (the corpus joined into
   1024-token chunks, batch 1, bf16 mixed precision), same model, rank, alpha, target modules,
   learning rate and schedule, one after the other in this process. Target: olivepress at
   least 2x faster, to an eval loss no worse.

3. Several processes (`--processes`): the same few LoRA steps on the float embedded model with
   `num_processes` 1 and 2 and the same global batch: wall time of the pass, training time,
   and how far apart the two loss curves are.

    python benchmarks/finetune.py            # the full run (about half an hour on 2 cores)
    python benchmarks/finetune.py --quick    # a smoke run on a few pairs
    python benchmarks/finetune.py --processes [--steps 8]   # 1 vs 2 processes (a few minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from _common import print_table, write_result
from olivepress.evaluate.accuracy import rouge_l  # noqa: E402

TRAVEL = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "travel" / "data_sample_travel.jsonl"
)
PROMPT = "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
TEMPLATE = PROMPT + "{response}<|im_end|>"
HELD_OUT = 0.1
SPLIT_SEED = 0
LORA = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LEARNING_RATE = 2e-4
MAX_NEW_TOKENS = 64
THREADS = os.cpu_count() or 1  # set in main(): torch's thread count for the timed runs


# --- data and model -------------------------------------------------------------------------


def split_travel(work: Path, quick: bool) -> tuple[Path, list[dict]]:
    from olivepress.data import train_eval_split

    records = [json.loads(line) for line in TRAVEL.read_text(encoding="utf-8").splitlines() if line.strip()]
    if quick:
        records = records[:40]
    train, held_out = train_eval_split(records, HELD_OUT, SPLIT_SEED)
    train_file = work / "travel_train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in train))
    return train_file, list(held_out)


def base_model(work: Path) -> tuple[str, str]:
    """The model to fine-tune, and what it is: AWQ-quantized when the AWQ pass exists."""
    from olivepress.errors import OlivepressError
    from olivepress.models.default import embedded_model_folder
    from olivepress.passes.registry import find_pass
    from olivepress.paths import olivepress_home

    folder = str(embedded_model_folder())
    try:
        find_pass("AWQ")
    except OlivepressError:
        return folder, "SmolLM2-135M-Instruct, float (no AWQ pass registered when this ran)"
    from olivepress.api import run

    result = run(
        {
            "input_model": {"model_path": folder},
            "passes": {"awq": {"type": "AWQ"}},
            "output_dir": str(work / "awq"),
            "cache_dir": str(olivepress_home() / "benchmark-cache"),
        },
        summary=False,
        log_level=2,
    )
    return result.model.path, "SmolLM2-135M-Instruct, AWQ 4-bit (olivepress AWQ pass, default options)"


def sequences(tokenizer, records: list[dict], strategy: str = "line-by-line", max_len: int = 1024):
    from olivepress.data import PreProcessDataConfig, training_examples
    from olivepress.data.templates import fill_template

    pre = PreProcessDataConfig(text_template=TEMPLATE, corpus_strategy=strategy, source_max_len=max_len)
    return training_examples([fill_template(TEMPLATE, r) for r in records], tokenizer, pre)


# --- the two trainers -----------------------------------------------------------------------


def train_olivepress(model_path: str, train_file: Path, work: Path) -> tuple[str, float, float, dict]:
    """(adapter folder, training seconds, end-to-end seconds, end record of the training log)."""
    from olivepress.api import run

    data = {
        "name": "travel",
        "load_dataset_config": {"data_files": str(train_file)},
        "pre_process_data_config": {"text_template": TEMPLATE, "corpus_strategy": "line-by-line"},
    }
    started = time.perf_counter()
    result = run(
        {
            "input_model": {"model_path": model_path},
            "data_configs": [data],
            "passes": {
                "lora": {
                    "type": "LoRA",
                    "train_data_config": "travel",
                    "target_modules": TARGETS,
                    **LORA,
                    "training_args": {
                        "num_train_epochs": 1,
                        "learning_rate": LEARNING_RATE,
                        "seed": 0,
                        "logging_steps": 5,
                    },
                }
            },
            "output_dir": str(work / "olivepress"),
            "cache_dir": str(work / "cache"),
        },
        summary=False,
        log_level=1,
    )
    end_to_end = time.perf_counter() - started
    adapter = Path(result.model.adapter_path)
    records = [json.loads(line) for line in (adapter / "training_log.jsonl").read_text().splitlines()]
    end = records[-1]
    return str(adapter), end["runtime_s"] - end["eval_runtime_s"], end_to_end, end


def train_hf_trainer(model_path: str, train_records: list[dict], work: Path) -> tuple[str, float, int, int]:
    """Olive's default recipe with HF Trainer: (adapter folder, training seconds, steps, tokens)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments, default_data_collator

    from olivepress.models.handles import HfModel
    from olivepress.models.loading import load_causal_lm, load_tokenizer

    handle = HfModel(path=model_path)
    tokenizer = load_tokenizer(handle)
    chunks = sequences(tokenizer, train_records, strategy="join", max_len=1024)
    dataset = [{key: torch.tensor(value) for key, value in chunk.items()} for chunk in chunks]
    torch.manual_seed(0)
    model = get_peft_model(
        load_causal_lm(handle),
        LoraConfig(
            r=LORA["lora_r"],
            lora_alpha=LORA["lora_alpha"],
            lora_dropout=LORA["lora_dropout"],
            target_modules=TARGETS,
            task_type="CAUSAL_LM",
        ),
    )
    args = TrainingArguments(
        output_dir=str(work / "hf-trainer"),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=1,
        num_train_epochs=1,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="linear",
        bf16=True,
        use_cpu=True,
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=default_data_collator)
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    adapter = work / "hf-trainer" / "adapter"
    model.save_pretrained(adapter)
    return str(adapter), seconds, output.global_step, sum(len(c["input_ids"]) for c in chunks)


# --- measuring ------------------------------------------------------------------------------


def load_with_adapter(model_path: str, adapter: str | None):
    from peft import PeftModel

    from olivepress.models.handles import HfModel
    from olivepress.models.loading import load_causal_lm

    model = load_causal_lm(HfModel(path=model_path))
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    return model.eval()


def held_out_loss(model, tokenizer, held_out: list[dict]) -> float:
    from olivepress.passes.torch.lora.train_adapter import pad_token_id
    from olivepress.train.loop import evaluate_loss

    return evaluate_loss(model, sequences(tokenizer, held_out), 8, pad_token_id(tokenizer))


def greedy_answers(model, tokenizer, prompts: list[str]) -> list[str]:
    import torch

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    answers = []
    for start in range(0, len(prompts), 8):
        texts = [PROMPT.format(prompt=p) for p in prompts[start : start + 8]]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **batch,
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                eos_token_id=end,
                pad_token_id=tokenizer.pad_token_id,
            )
        for row in out[:, batch["input_ids"].shape[1] :]:
            answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return answers


def quality(model_path: str, adapter: str | None, tokenizer, held_out: list[dict]) -> dict:
    from olivepress.cpu import torch_threads

    # Not timed; one thread keeps small generation steps clear of waiting on a busy core.
    with torch_threads(1):
        model = load_with_adapter(model_path, adapter)
        answers = greedy_answers(model, tokenizer, [r["prompt"] for r in held_out])
        scores = [rouge_l(a, r["response"]) for a, r in zip(answers, held_out, strict=True)]
        loss = held_out_loss(model, tokenizer, held_out)
    return {
        "eval_loss": loss,
        "rouge_l": sum(scores) / len(scores),
        "examples": [
            {"prompt": r["prompt"], "answer": a, "reference": r["response"]}
            for r, a in list(zip(held_out, answers, strict=True))[:3]
        ],
    }


def ablation(model_path: str, train_records: list[dict], steps: int = 2) -> list[dict]:
    """Seconds per 1000 tokens of one training step (forward, backward, AdamW) under each of the
    settings that differ between the two recipes, the same LoRA on the same model: where the
    speed-up comes from. The median of `steps` timed steps after one untimed."""
    import statistics

    import torch
    from peft import LoraConfig, get_peft_model

    from olivepress.cpu import torch_threads
    from olivepress.models.handles import HfModel
    from olivepress.models.loading import load_causal_lm, load_tokenizer
    from olivepress.passes.torch.lora.train_adapter import pad_token_id
    from olivepress.train.loss import summed_loss
    from olivepress.train.micro_batches import collate, epoch_batches

    handle = HfModel(path=model_path)
    tokenizer = load_tokenizer(handle)
    torch.manual_seed(0)
    model = get_peft_model(
        load_causal_lm(handle),
        LoraConfig(
            r=LORA["lora_r"],
            lora_alpha=LORA["lora_alpha"],
            lora_dropout=LORA["lora_dropout"],
            target_modules=TARGETS,
        ),
    )
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    chunk = collate(
        sequences(tokenizer, train_records, strategy="join", max_len=1024)[:1], pad_token_id(tokenizer)
    )
    bucketed = epoch_batches(sequences(tokenizer, train_records), 8, seed=0, pad_id=pad_token_id(tokenizer))[
        : steps + 1
    ]

    def hf_style(batch):  # the model's own forward: logits at every position
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss

    def ours(batch):
        return summed_loss(model, batch) / batch.num_targets

    settings = [
        (
            "1024-token chunk, bf16 autocast, all cores (Olive default)",
            [chunk] * (steps + 1),
            hf_style,
            torch.bfloat16,
            THREADS,
        ),
        ("1024-token chunk, bf16 autocast, 1 thread", [chunk] * (steps + 1), hf_style, torch.bfloat16, 1),
        ("1024-token chunk, fp32, all cores", [chunk] * (steps + 1), hf_style, None, THREADS),
        ("1024-token chunk, fp32, 1 thread", [chunk] * (steps + 1), hf_style, None, 1),
        ("per-sample batches of 8, fp32, all cores (olivepress)", bucketed, ours, None, THREADS),
        ("per-sample batches of 8, fp32, 1 thread (olivepress)", bucketed, ours, None, 1),
    ]
    rows = []
    for name, batches, loss_of, dtype, threads in settings:
        per_k = []
        with torch_threads(threads):
            for index, batch in enumerate(batches):
                started = time.perf_counter()
                with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                    loss = loss_of(batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if index:
                    per_k.append((time.perf_counter() - started) / batch.num_tokens * 1000)
        rows.append({"setting": name, "s_per_1k_tokens": statistics.median(per_k)})
        print(f"  {name}: {rows[-1]['s_per_1k_tokens']:.1f} s per 1000 tokens", flush=True)
    return rows


def processes_comparison(train_file: Path, work: Path, steps: int) -> dict:
    """The LoRA pass on 1 and on 2 processes, same global batch (4 x 2), no dropout, bf16 where
    the CPU has it: wall time of the pass, training time, loss curves."""
    from olivepress.api import run
    from olivepress.models.default import embedded_model_folder

    data = {
        "name": "travel",
        "load_dataset_config": {"data_files": str(train_file)},
        "pre_process_data_config": {"text_template": TEMPLATE, "source_max_len": 256},
    }
    runs = {}
    for processes in (1, 2):
        options = {
            "type": "LoRA",
            "train_data_config": "travel",
            "target_modules": TARGETS,
            **LORA,
            "lora_dropout": 0.0,
            "num_processes": processes,
            # No full_determinism: the one-process run picks its threads as a user's run would
            # (all cores, or one where that measures faster on a busy machine).
            "training_args": {
                "max_steps": steps,
                "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 2,
                "learning_rate": LEARNING_RATE,
                "seed": 0,
                "logging_steps": 1,
            },
        }
        started = time.perf_counter()
        result = run(
            {
                "input_model": {"model_path": str(embedded_model_folder())},
                "data_configs": [data],
                "passes": {"lora": options},
                "output_dir": str(work / f"p{processes}"),
                "cache_dir": str(work / f"cache{processes}"),
            },
            summary=False,
            log_level=2,
        )
        wall = time.perf_counter() - started
        log = [
            json.loads(line)
            for line in (Path(result.model.adapter_path) / "training_log.jsonl").read_text().splitlines()
        ]
        runs[processes] = {
            "wall_s": wall,
            "train_s": log[-1]["runtime_s"],
            "threads": log[-1]["threads"],
            "precision": log[0]["precision"],
            "losses": [r["loss"] for r in log if r["event"] == "train"],
            "sequences_per_process": log[-1].get("sequences_per_process"),
        }
    runs["max_loss_diff"] = max(abs(a - b) for a, b in zip(runs[1]["losses"], runs[2]["losses"], strict=True))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="A smoke run on 40 pairs (numbers mean nothing)."
    )
    parser.add_argument("--skip_baseline", action="store_true", help="Only olivepress (no HF Trainer run).")
    parser.add_argument(
        "--ablation_only",
        action="store_true",
        help="Only the per-step ablation, added to the existing results/finetune.json.",
    )
    parser.add_argument(
        "--processes",
        action="store_true",
        help="Only num_processes 1 vs 2 on a few steps (results/finetune_processes.json).",
    )
    parser.add_argument(
        "--steps", type=int, default=8, help="Optimizer steps of the --processes runs (default 8)."
    )
    options = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not TRAVEL.is_file():
        raise SystemExit(f"the seed travel data is not at {TRAVEL}")
    random.seed(0)
    if options.processes:
        with tempfile.TemporaryDirectory() as tmp:
            train_file, _ = split_travel(Path(tmp), quick=False)
            runs = processes_comparison(train_file, Path(tmp), options.steps)
        print_table(
            f"LoRA on the float SmolLM2-135M, {options.steps} steps of 8 sequences ({runs[1]['precision']})",
            ["processes", "threads each", "wall s", "train s", "sequences per process", "final loss"],
            [
                [
                    n,
                    runs[n]["threads"],
                    runs[n]["wall_s"],
                    runs[n]["train_s"],
                    runs[n]["sequences_per_process"] or "-",
                    runs[n]["losses"][-1],
                ]
                for n in (1, 2)
            ],
        )
        print(f"\nlargest loss difference over {options.steps} steps: {runs['max_loss_diff']:.2e}")
        write_result("finetune_processes", {"steps": options.steps, "global_batch": 8, "runs": runs})
        return

    from olivepress.cpu import torch_threads
    from olivepress.models.handles import HfModel
    from olivepress.models.loading import load_tokenizer
    from olivepress.train.device import cpu_has_native_bf16, training_threads

    global THREADS
    threads = THREADS = training_threads()
    with torch_threads(threads), tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_path, model_name = base_model(work)
        tokenizer = load_tokenizer(HfModel(path=model_path))
        train_file, held_out = split_travel(work, options.quick)
        train_records = [json.loads(line) for line in train_file.read_text().splitlines()]
        if options.ablation_only:
            from _common import RESULTS

            print("per-step cost of each setting:", flush=True)
            rows = ablation(model_path, train_records)
            path = RESULTS / "finetune.json"
            saved = json.loads(path.read_text()) if path.is_file() else {}
            write_result(
                "finetune",
                {k: v for k, v in saved.items() if k not in ("benchmark", "when", "machine")}
                | {"ablation": rows},
            )
            return
        print(
            f"model: {model_name}; {len(train_records)} training pairs, {len(held_out)} held out; "
            f"{threads} threads",
            flush=True,
        )

        base = quality(model_path, None, tokenizer, held_out)
        ours_adapter, ours_s, ours_total_s, ours_end = train_olivepress(model_path, train_file, work)
        ours = quality(model_path, ours_adapter, tokenizer, held_out)
        rows = [
            ["base model", "-", "-", "-", "-", base["eval_loss"], base["rouge_l"]],
            [
                "olivepress LoRA",
                ours_end["steps"],
                ours_end["train_tokens"],
                ours_s,
                ours_end["train_tokens"] / ours_s,
                ours["eval_loss"],
                ours["rouge_l"],
            ],
        ]
        payload = {
            "model": model_name,
            "threads": threads,
            "cpu_native_bf16": cpu_has_native_bf16(),
            "train_pairs": len(train_records),
            "held_out_pairs": len(held_out),
            "lora": {**LORA, "target_modules": TARGETS, "learning_rate": LEARNING_RATE, "epochs": 1},
            "base": base,
            "olivepress": {**ours, "train_s": ours_s, "end_to_end_s": ours_total_s, "log_end": ours_end},
        }
        if not options.skip_baseline:
            hf_adapter, hf_s, hf_steps, hf_tokens = train_hf_trainer(model_path, train_records, work)
            hf = quality(model_path, hf_adapter, tokenizer, held_out)
            rows.append(
                [
                    "HF Trainer (Olive default)",
                    hf_steps,
                    hf_tokens,
                    hf_s,
                    hf_tokens / hf_s,
                    hf["eval_loss"],
                    hf["rouge_l"],
                ]
            )
            payload["hf_trainer"] = {**hf, "train_s": hf_s, "steps": hf_steps, "tokens": hf_tokens}
            payload["speedup"] = hf_s / ours_s
            payload["eval_loss_no_worse"] = ours["eval_loss"] <= hf["eval_loss"]
        if not options.quick:
            print("\nper-step cost of each setting (where the speed-up comes from):", flush=True)
            payload["ablation"] = ablation(model_path, train_records)

    print_table(
        f"LoRA r={LORA['lora_r']} on {model_name}: one epoch of travel Q&A",
        ["run", "steps", "tokens", "train s", "tok/s", "held-out loss", "ROUGE-L"],
        rows,
    )
    if "speedup" in payload:
        verdict = "met" if payload["speedup"] >= 2 and payload["eval_loss_no_worse"] else "MISSED"
        print(
            f"\nolivepress is {payload['speedup']:.2f}x faster than HF Trainer; eval loss "
            f"{payload['olivepress']['eval_loss']:.4f} vs {payload['hf_trainer']['eval_loss']:.4f} "
            f"(target {verdict})"
        )
    for example in ours["examples"][:2]:
        print(
            f"\nQ: {example['prompt']}\nfine-tuned: {example['answer']}\nreference:  {example['reference']}"
        )
    if not options.quick:
        write_result("finetune", payload)


if __name__ == "__main__":
    main()

"""The seed lab on real models of several architectures: time, memory, quality, speed, size.

Per model (`default` is the embedded SmolLM2-135M-Instruct; the others are GGUF files that
`../shared/models/fetch.sh NAME` downloads, looked for in ~/.cache/olivepress-models):

1. the seed's commands as written (only the model paths and `olivepress` for `olive`), each in
   a fresh process, timed, with the process's peak memory: quantize RTN, AWQ, GPTQ (4 bits,
   default options) -> finetune LoRA on the AWQ checkpoint (the seed's travel data and text
   template, `--max_steps` steps; `--eval_split 0.1` added for the losses below) -> auto-opt
   with the adapter (int4 ORT GenAI, CPU) -> generate the seed's Chicago question with the
   adapter off and on;
2. perplexity on the held-out prose shipped with olivepress (`heldout_names()[0]`) of the
   fp32 model, the three checkpoints (as PyTorch loads them) and the final int4 ONNX model
   (no adapter), same windows for all;
3. finetune eval loss before and after training;
4. decode tokens/s (greedy, forced length) of the ONNX model with the adapter off and on;
5. size of the ONNX model folder.

    python benchmarks/models.py --models default --max_steps 5         # a smoke run, minutes
    python benchmarks/models.py --models default,qwen2.5-coder-0.5b-instruct,gemma-3-270m
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAVEL = ROOT.parent / "shared" / "data" / "travel" / "data_sample_travel.jsonl"
GGUF_CACHE = Path.home() / ".cache" / "olivepress-models"
# The seed's finetune template and its app.py prompt, verbatim (Phi-3's chat markers): the lab
# as a user copies it, whatever the model's own chat template is.
SEED_TEMPLATE = "<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>"
SEED_QUESTION = "what is the best thing to see in chicago"
ANSWER_TOKENS = 60
PPL_SEQ_LEN = 256
PPL_TOKENS = 2048  # the first tokens of the held-out text: enough to rank, quick on 2 cores
DECODE_TOKENS = 64
SPEED_PROMPT = "Plan a two-day visit to Rome for a first-time traveller."


def source_of(name: str) -> str:
    if name == "default":
        return name
    gguf = GGUF_CACHE / f"{name}.gguf"
    if not gguf.is_file():
        raise SystemExit(f"{gguf} is not there; fetch it with ../shared/models/fetch.sh {name}")
    return str(gguf)


def olivepress(*args: str) -> tuple[float, float]:
    """One olivepress command in a fresh process: (wall seconds, peak resident MB)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        command = [sys.executable, "-m", "olivepress", *args]
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        # wait4 gives this child's own peak RSS (this parent stays small: no torch imported yet).
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            log.seek(0)
            raise SystemExit(f"olivepress {args[0]} failed:\n{log.read().decode(errors='replace')[-4000:]}")
    return seconds, usage.ru_maxrss / 1024


def generate(onnx: Path, active: str) -> str:
    """The seed's step 4 through `olivepress generate`: the answer text, greedy."""
    prompt = SEED_TEMPLATE.split("{response}")[0].format(prompt=SEED_QUESTION)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = ["generate", "-m", str(onnx), "--raw", "-p", prompt, "--active", active]
    done = subprocess.run(
        [sys.executable, "-m", "olivepress", *command, "--max_new_tokens", str(ANSWER_TOKENS)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"olivepress generate failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip()


class Steps:
    """Each step's (seconds, peak MB), kept in the work folder so that a re-run skips finished steps."""

    def __init__(self, work: Path) -> None:
        self.file = work / "steps.json"
        self.done = json.loads(self.file.read_text()) if self.file.is_file() else {}

    def run(self, step: str, *args: str) -> None:
        if step not in self.done:
            self.done[step] = olivepress(*args)
            self.file.write_text(json.dumps(self.done, indent=1))


def run_lab(name: str, work: Path, max_steps: int) -> dict:
    """The lab's commands for one model; returns times, peak memory and the output folders."""
    work.mkdir(parents=True, exist_ok=True)
    cache = ["--cache_dir", str(work / "cache"), "--log_level", "1"]
    steps, folders = Steps(work), {}
    source = source_of(name)
    for algorithm in ("rtn", "awq", "gptq"):
        out = work / algorithm
        steps.run(
            f"quantize {algorithm}",
            "quantize",
            "-m",
            source,
            "--algorithm",
            algorithm,
            "-o",
            str(out),
            *cache,
        )
        folders[algorithm] = out / "model"
    steps.run(
        "finetune lora",
        "finetune",
        "--method",
        "lora",
        "-m",
        str(folders["awq"]),
        "--data_files",
        str(TRAVEL),
        "--data_name",
        "json",
        "--text_template",
        SEED_TEMPLATE,
        "--eval_split",
        "0.1",
        "--max_steps",
        str(max_steps),
        "-o",
        str(work / "ft"),
        *cache,
    )
    steps.run(
        "auto-opt",
        "auto-opt",
        "-m",
        str(work / "ft" / "model"),
        "--adapter_path",
        str(work / "ft" / "adapter"),
        "--device",
        "cpu",
        "--provider",
        "CPUExecutionProvider",
        "--use_ort_genai",
        "-o",
        str(work / "onnx-ao"),
        *cache,
    )
    onnx = work / "onnx-ao"
    answers = {"adapter off": generate(onnx, "base"), "adapter on": generate(onnx, "default")}
    return {
        "steps": steps.done,
        "folders": folders,
        "source": source,
        "adapter": work / "ft" / "adapter",
        "onnx": onnx / "model",
        "answers": answers,
    }


def eval_losses(adapter: Path) -> tuple[float | None, float | None]:
    records = [json.loads(line) for line in (adapter / "training_log.jsonl").read_text().splitlines()]
    evals = [r["eval_loss"] for r in records if r.get("event") == "eval"]
    return (evals[0], evals[-1]) if evals else (None, None)


def perplexities(lab: dict) -> dict[str, float]:
    import torch

    from olivepress.data.shipped import heldout_names, heldout_text
    from olivepress.evaluate.perplexity import perplexity, perplexity_of_logits
    from olivepress.models.handles import HfModel
    from olivepress.models.loading import load_causal_lm, load_tokenizer
    from olivepress.models.resolve import resolve_model
    from olivepress.runtime.generate import GenAIModel

    text = heldout_text(heldout_names()[0])
    fp32 = resolve_model(lab["source"])
    tokenizer = load_tokenizer(fp32)
    ids = tokenizer(text).input_ids[:PPL_TOKENS]
    text = tokenizer.decode(ids)
    result = {}
    for label, handle in [("fp32", fp32), *((k, HfModel(path=str(v))) for k, v in lab["folders"].items())]:
        model = load_causal_lm(handle, dtype=torch.float32)
        result[label] = perplexity(model, tokenizer, text, seq_len=PPL_SEQ_LEN, stride=PPL_SEQ_LEN)
        del model
    onnx = GenAIModel(lab["onnx"])
    result["onnx int4"] = perplexity_of_logits(onnx.logits, ids, PPL_SEQ_LEN, PPL_SEQ_LEN)
    return result


def decode_speed(folder: Path) -> dict[str, float]:

    from olivepress.runtime.generate import BASE, GenAIModel

    model = GenAIModel(folder)
    speeds = {}
    for adapter in (BASE, *model.adapter_names):
        input_ids = model.encode(model.format_prompt(SPEED_PROMPT))
        generator = model.forced_generator(len(input_ids), DECODE_TOKENS, adapter)
        generator.append_tokens(input_ids)
        generator.generate_next_token()  # the first token comes from the prefill
        started = time.perf_counter()
        for _ in range(DECODE_TOKENS - 1):
            generator.generate_next_token()
        speeds["adapter off" if adapter == BASE else "adapter on"] = (DECODE_TOKENS - 1) / (
            time.perf_counter() - started
        )
    return speeds


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        default="default,qwen2.5-coder-0.5b-instruct,gemma-3-270m",
        help="Comma-separated: default, or names fetch.sh knows.",
    )
    parser.add_argument("--max_steps", type=int, default=100, help="Finetune steps (the seed's 100).")
    parser.add_argument("--work", type=Path, help="Folder to keep the outputs in (default: a temporary one).")
    args = parser.parse_args()
    if not TRAVEL.is_file():
        raise SystemExit(f"the seed travel data is not at {TRAVEL}")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for name in names:
        source_of(name)  # every model there before the first long step

    labs = {}
    with tempfile.TemporaryDirectory(prefix="olivepress-models-") as tmp:
        root = args.work or Path(tmp)
        for name in names:  # every command first, from a parent that has not imported torch
            print(f"{name}: running the lab", flush=True)
            labs[name] = run_lab(name, root / name, args.max_steps)
        results = {}
        for name, lab in labs.items():
            before, after = eval_losses(lab["adapter"])
            results[name] = {
                "steps": {step: {"seconds": s, "peak_mb": mb} for step, (s, mb) in lab["steps"].items()},
                "perplexity": perplexities(lab),
                "eval_loss_before": before,
                "eval_loss_after": after,
                "decode_tokens_per_s": decode_speed(lab["onnx"]),
                "onnx_mb": folder_mb(lab["onnx"]),
                "answers": lab["answers"],
            }

    step_names = list(next(iter(results.values()))["steps"])
    print_table(
        "Time (s) and peak memory (MB) per step",
        ["model", *step_names],
        [
            [
                name,
                *(
                    f"{r['steps'][s]['seconds']:.0f} s / {r['steps'][s]['peak_mb']:.0f} MB"
                    for s in step_names
                ),
            ]
            for name, r in results.items()
        ],
    )
    ppl_names = list(next(iter(results.values()))["perplexity"])
    print_table(
        f"Perplexity on held-out prose ({PPL_TOKENS} tokens, windows of {PPL_SEQ_LEN})",
        ["model", *ppl_names],
        [[name, *r["perplexity"].values()] for name, r in results.items()],
    )
    print_table(
        f"Finetune ({args.max_steps} steps) and the ONNX model",
        ["model", "eval loss before", "after", "decode tok/s adapter off", "on", "ONNX MB"],
        [
            [
                name,
                r["eval_loss_before"],
                r["eval_loss_after"],
                *r["decode_tokens_per_s"].values(),
                r["onnx_mb"],
            ]
            for name, r in results.items()
        ],
    )
    for name, r in results.items():
        off, on = r["answers"]["adapter off"], r["answers"]["adapter on"]
        print(f"\n{name}: {SEED_QUESTION!r} (greedy, {ANSWER_TOKENS} tokens); differ: {off != on}")
        print(f"  adapter off: {off!r}\n  adapter on:  {on!r}")
    write_result("models", {"max_steps": args.max_steps, "models": results})


if __name__ == "__main__":
    main()

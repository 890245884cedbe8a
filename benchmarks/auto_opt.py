"""The seed lab end to end on the embedded SmolLM2-135M-Instruct, and decode speed with adapters.

1. The lab's commands as the seed writes them (olivepress for olive), each timed in a fresh
   process: quantize (AWQ) -> finetune (LoRA, 100 steps, the seed's travel data with
   SmolLM2's chat tokens) -> auto-opt (int4 + the adapter as an .onnx_adapter) -> the seed's
   app.py (examples/app.py). Checks: the app prints a travel answer; the answer with the
   adapter differs from the base model's; auto-opt's logits parity with PyTorch+PEFT is
   within 1e-2 mean absolute difference.
2. Decode speed (greedy, 128 new tokens forced, the same prompts, median of 5 rounds taken
   in turn so drift hits every variant alike): our model with the adapter active, the same
   model with no adapter, and a plain `onnxruntime_genai.models.builder` int4 build of the
   same base (the AWQ checkpoint, no adapter). Targets: adapter >= 0.9x no adapter; no
   adapter >= the plain build.
3. The same two ratios for a smaller adapter (random r16 on q_proj/v_proj only, PEFT's
   default targets, built on the same base): the adapter path is memory-bound, so its cost
   is the adapter's bytes against the base's (reported, not a target).

    python benchmarks/auto_opt.py              # about 12 minutes on 2 cores
    python benchmarks/auto_opt.py --reuse DIR  # keep the lab's folders in DIR and reuse them
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_table, write_result

ROOT = Path(__file__).resolve().parents[1]
TRAVEL = ROOT.parent / "shared" / "data" / "travel" / "data_sample_travel.jsonl"
TEMPLATE = r"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>"
APP_PROMPT = "what is the best thing to see in chicago"
SPEED_PROMPTS = [
    "What should I pack for a week in Iceland in winter?",
    "Plan a two-day visit to Rome for a first-time traveller.",
    "How do I get from the airport to the city centre in Tokyo?",
]
NEW_TOKENS = 128
ROUNDS = 5
MAX_MEAN_DIFF = 1e-2
MIN_ADAPTER_RATIO = 0.9


def olivepress(*args: str) -> float:
    """Run one olivepress command in a fresh process; its wall time in seconds."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "olivepress", *args], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"olivepress {args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def run_lab(work: Path) -> dict[str, float]:
    """The seed lab's three commands; skips a step whose output is already there (--reuse)."""
    steps = {
        "quantize": (
            work / "awq",
            [
                "quantize",
                "--model_name_or_path",
                "default",
                "--trust_remote_code",
                "--algorithm",
                "awq",
                "--output_path",
                str(work / "awq"),
                "--log_level",
                "1",
            ],
        ),
        "finetune": (
            work / "ft",
            [
                "finetune",
                "--method",
                "lora",
                "--model_name_or_path",
                str(work / "awq"),
                "--data_files",
                str(TRAVEL),
                "--data_name",
                "json",
                "--text_template",
                TEMPLATE,
                "--max_steps",
                "100",
                "--output_path",
                str(work / "ft"),
                "--log_level",
                "1",
            ],
        ),
        "auto-opt": (
            work / "onnx-ao",
            [
                "auto-opt",
                "--model_name_or_path",
                str(work / "ft" / "model"),
                "--adapter_path",
                str(work / "ft" / "adapter"),
                "--device",
                "cpu",
                "--provider",
                "CPUExecutionProvider",
                "--use_ort_genai",
                "--output_path",
                str(work / "onnx-ao"),
                "--log_level",
                "1",
            ],
        ),
    }
    seconds = {}
    for name, (output, command) in steps.items():
        if (output / ".olivepress-output").is_file():
            print(f"{name}: reusing {output}", flush=True)
            continue
        seconds[name] = olivepress(*command, "--cache_dir", str(work / "cache"))
        print(f"{name}: {seconds[name]:.1f} s", flush=True)
    return seconds


def run_app(work: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "app.py"), str(work / "onnx-ao")],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"examples/app.py failed:\n{done.stderr[-3000:]}")
    answer = done.stdout.split(APP_PROMPT, 1)[-1].strip()
    return answer


def plain_builder(source: Path, out: Path) -> None:
    """onnxruntime_genai.models.builder as its users run it: int4 for the CPU, default options."""
    if (out / "genai_config.json").is_file():
        return
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "onnxruntime_genai.models.builder",
            "-i",
            str(source),
            "-o",
            str(out),
            "-p",
            "int4",
            "-e",
            "cpu",
            "-c",
            str(out.parent / "builder-cache"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    if done.returncode != 0:
        raise SystemExit(f"the plain builder failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def small_adapter_build(work: Path) -> Path:
    """auto-opt of the lab's base with a random r16 LoRA on q_proj/v_proj (B scaled down so
    the answers stay sane): how fast an adapter of 3.7 MB a token decodes."""
    out = work / "onnx-qv"
    if (out / "footprint.json").is_file():
        return out
    import torch
    from peft import LoraConfig, get_peft_model

    from olivepress.models.handles import HfModel
    from olivepress.models.loading import load_causal_lm

    torch.manual_seed(0)
    config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(load_causal_lm(HfModel(path=str(work / "ft" / "model"))), config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.mul_(0.01)
    peft_model.save_pretrained(work / "qv-adapter")
    olivepress(
        "auto-opt",
        "-m",
        str(work / "ft" / "model"),
        "--adapter_path",
        str(work / "qv-adapter"),
        "--device",
        "cpu",
        "--provider",
        "CPUExecutionProvider",
        "--use_ort_genai",
        "-o",
        str(out),
        "--cache_dir",
        str(work / "cache"),
    )
    return out


_RSS_PROBE = """
import sys
import onnxruntime_genai as og
model = og.Model(sys.argv[1])
params = og.GeneratorParams(model)
params.set_search_options(max_length=40)
generator = og.Generator(model, params)
generator.append_tokens(og.Tokenizer(model).encode("Hello there, how"))
for _ in range(10):
    generator.generate_next_token()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024)
"""


def peak_rss_mb(folder: Path) -> float:
    """Peak memory of a fresh process that loads the model (no adapter) and generates 10 tokens:
    pre-packed weights included, which the file sizes do not show."""
    done = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(folder)], capture_output=True, text=True, check=True
    )
    return float(done.stdout.split()[-1])


def decode_tokens_per_s(model, adapter: str | None, prompt: str) -> float:
    """Decode speed for NEW_TOKENS forced greedy tokens (prefill excluded)."""

    input_ids = model.encode(model.format_prompt(prompt))
    generator = model.forced_generator(len(input_ids), NEW_TOKENS, adapter)
    generator.append_tokens(input_ids)
    generator.generate_next_token()  # the first token comes from the prefill
    started = time.perf_counter()
    for _ in range(NEW_TOKENS - 1):
        generator.generate_next_token()
    return (NEW_TOKENS - 1) / (time.perf_counter() - started)


def decode_speeds(variants: dict[str, tuple[object, str | None]]) -> dict[str, dict]:
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    for model, adapter in variants.values():  # one untimed warm-up each
        decode_tokens_per_s(model, adapter, SPEED_PROMPTS[0])
    for _ in range(ROUNDS):
        for name, (model, adapter) in variants.items():
            speeds = [decode_tokens_per_s(model, adapter, prompt) for prompt in SPEED_PROMPTS]
            rounds[name].append(statistics.mean(speeds))
    return {name: {"median": statistics.median(values), "rounds": values} for name, values in rounds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reuse", type=Path, help="Work folder to keep (and reuse) the lab's outputs in.")
    args = parser.parse_args()
    if not TRAVEL.is_file():
        raise SystemExit(f"the seed travel data is not at {TRAVEL}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    with tempfile.TemporaryDirectory(prefix="olivepress-lab-") as tmp:
        work = args.reuse or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        seconds = run_lab(work)
        app_answer = run_app(work)
        print(f"app.py (travel adapter): {app_answer}", flush=True)

        from olivepress.runtime.generate import BASE, GenAIModel, SearchOptions

        ours = GenAIModel(work / "onnx-ao")
        adapter = ours.adapter_names[0]
        greedy = SearchOptions(max_new_tokens=100 - len(ours.encode(ours.format_prompt(APP_PROMPT))))
        base_answer = ours.generate(APP_PROMPT, greedy, adapter=BASE).text.strip()
        adapter_answer = ours.generate(APP_PROMPT, greedy, adapter=adapter).text.strip()
        print(f"base model:             {base_answer}", flush=True)

        footprint = json.loads((work / "onnx-ao" / "footprint.json").read_text())
        parity = next(iter(footprint["checks"].values()))  # auto-opt's check before hand-over

        plain_builder(work / "awq" / "model", work / "plain-int4")
        plain = GenAIModel(work / "plain-int4")
        small = GenAIModel(small_adapter_build(work))
        speeds = decode_speeds(
            {
                "adapter active": (ours, adapter),
                "no adapter": (ours, BASE),
                "plain builder int4": (plain, None),
                "q/v adapter active": (small, small.adapter_names[0]),
                "q/v build, no adapter": (small, BASE),
            }
        )
        memory = {
            "our model (LoRA switch)": peak_rss_mb(work / "onnx-ao" / "model"),
            "plain builder int4": peak_rss_mb(work / "plain-int4"),
        }

    with_adapter, without, plain_speed = (
        speeds[k]["median"] for k in ("adapter active", "no adapter", "plain builder int4")
    )
    worst_mean = max(entry["mean_abs_diff"] for entry in parity["variants"])
    checks = [
        ["app.py prints a travel answer", len(app_answer.split()), len(app_answer.split()) >= 5],
        ["adapter answer differs from base", adapter_answer != base_answer, adapter_answer != base_answer],
        ["parity: worst mean |diff| vs PyTorch+PEFT", worst_mean, worst_mean <= MAX_MEAN_DIFF],
        [
            "hand-over check (PyTorch on the same grid) passed",
            parity.get("passed"),
            bool(parity.get("passed")),
        ],
        ["decode: adapter / no adapter", with_adapter / without, with_adapter / without >= MIN_ADAPTER_RATIO],
        ["decode: no adapter / plain builder", without / plain_speed, without >= plain_speed],
    ]
    small_with, small_without = (
        speeds["q/v adapter active"]["median"],
        speeds["q/v build, no adapter"]["median"],
    )
    smaller = [
        ["q/v adapter / no adapter", small_with / small_without],
        ["q/v build no adapter / plain", small_without / plain_speed],
    ]
    print_table("Seed lab commands", ["step", "seconds"], [[k, v] for k, v in seconds.items()])
    print("auto-opt's check:", *parity.get("lines", [])[:1])
    print_table(
        "Parity with PyTorch+PEFT (auto-opt's check)",
        ["adapter", "max |diff|", "mean |diff|", "same top-1"],
        [
            [r["adapter"], r["max_abs_diff"], r["mean_abs_diff"], r["top1_agreement"]]
            for r in parity["variants"]
        ],
    )
    print_table(
        f"Decode tokens/s ({NEW_TOKENS} greedy tokens, median of {ROUNDS})",
        ["variant", "median", "rounds"],
        [[k, v["median"], " ".join(f"{x:.1f}" for x in v["rounds"])] for k, v in speeds.items()],
    )
    print_table("Targets", ["check", "value", "met"], checks)
    print_table("A smaller adapter (r16 on q_proj/v_proj), same base", ["ratio", "value"], smaller)
    print_table("Peak memory, load + 10 tokens (MB)", ["model", "MB"], [[k, v] for k, v in memory.items()])
    write_result(
        "auto_opt",
        {
            "lab_seconds": seconds,
            "app_answer": app_answer,
            "base_answer": base_answer,
            "adapter_answer": adapter_answer,
            "parity": parity,
            "decode": speeds,
            "new_tokens": NEW_TOKENS,
            "rounds": ROUNDS,
            "prompts": SPEED_PROMPTS,
            "checks": [{"check": c, "value": v, "met": m} for c, v, m in checks],
            "small_adapter": dict(smaller),
            "peak_rss_mb": memory,
        },
    )


if __name__ == "__main__":
    main()

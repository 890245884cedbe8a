"""Olive's CPU int4 recipe, as Olive publishes it, against olivepress's defaults on one model.

Runs, each in a fresh process:

1. the recipe (tests/olive_recipes/cpu_int4.json: SelectiveMixedPrecision kld_gradient -> gptq
   4-bit asym g128 -> rtn 8-bit lm_head and embeddings -> ModelBuilder int4 -> GraphSurgeries
   TieWordEmbeddings) with only input_model.model_path swapped, through `olivepress run --config`;
2. `olivepress quantize --algorithm gptq` -> `olivepress auto-opt` with their defaults, and (size
   only) ModelBuilder alone on the same checkpoint: auto-opt before it put lm_head and the
   embeddings in 8 bits;
3. the float model (PyTorch) for the perplexity reference;
4. the recipe's `_with_eval` twin (tests/olive_recipes/cpu_int4_with_eval.json): as published
   (its lm-eval task, mmlu, has no data offline: the one line it prints is recorded), then with
   the task swapped for the shipped olivepress_travel_mc (passes from the recipe's cache);

and prints perplexity on the package's held-out prose (`olivepress benchmark --metrics
perplexity`), size on disk and greedy decode tokens per second (throughput, 128 new tokens).

    python benchmarks/olive_recipes.py default                 # the embedded SmolLM2-135M
    python benchmarks/olive_recipes.py ../shared/models/qwen2.5-0.5b-instruct-q8_0.gguf
    python benchmarks/olive_recipes.py default --skip defaults # no quantize -> auto-opt row
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
RECIPE = ROOT / "tests" / "olive_recipes" / "cpu_int4.json"
WITH_EVAL = ROOT / "tests" / "olive_recipes" / "cpu_int4_with_eval.json"
LOCAL_TASK = "olivepress_travel_mc"
ROWS = ("fp32", "recipe", "with_eval", "defaults")


def olivepress(*args: str, cwd: Path, may_fail: bool = False) -> float | str:
    """One olivepress command in a fresh process: its wall time in seconds, or (`may_fail`) the
    last line it printed when it failed."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "olivepress", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        if may_fail:
            return done.stderr.strip().splitlines()[-1]
        raise SystemExit(f"olivepress {args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def with_eval_row(model: str, work: Path) -> dict:
    """The _with_eval twin as published (its one line offline), then on the shipped task."""
    config = json.loads(WITH_EVAL.read_text())
    config["input_model"]["model_path"] = model
    (work / "with_eval_published.json").write_text(json.dumps(config, indent=1))
    published = olivepress("run", "--config", "with_eval_published.json", cwd=work, may_fail=True)
    for evaluator in config["evaluators"].values():
        evaluator["tasks"] = [LOCAL_TASK]
    (work / "with_eval.json").write_text(json.dumps(config, indent=1))
    seconds = olivepress("run", "--config", "with_eval.json", cwd=work)
    footprint = json.loads((work / config["output_dir"] / "footprint.json").read_text())
    metrics = footprint["evaluations"][0]["candidates"][0]["metrics"]
    return {
        "seconds": seconds,
        "published tasks": published if isinstance(published, str) else "ran",
        **{f"{LOCAL_TASK}.{k.split('.')[-1]}": v["value"] for k, v in metrics.items()},
    }


def measure(model: str, work: Path, name: str, metrics: str, decode_tokens: int) -> dict[str, float]:
    out = work / f"{name}-benchmark.json"
    olivepress(
        "benchmark",
        "-m",
        model,
        "--metrics",
        metrics,
        "--decode_tokens",
        str(decode_tokens),
        "--warmup_runs",
        "1",
        "--timed_runs",
        "3",
        "-o",
        str(out),
        cwd=work,
    )
    values = json.loads(out.read_text())["metrics"]
    return {key: value["value"] for key, value in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model path: 'default', a HF folder or a .gguf file")
    parser.add_argument(
        "--skip", choices=ROWS, action="append", default=[], help="leave out this row (repeatable)"
    )
    parser.add_argument("--decode_tokens", type=int, default=128)
    parser.add_argument(
        "--work", type=Path, help="keep the outputs in this folder (default: a temporary one)"
    )
    args = parser.parse_args()
    model = args.model if args.model == "default" else str(Path(args.model).resolve())
    work = args.work or Path(tempfile.mkdtemp(prefix="olive-recipes-"))
    work.mkdir(parents=True, exist_ok=True)
    metrics = "perplexity,throughput,size_on_disk"

    rows, result = [], {"model": args.model, "recipe": str(RECIPE.relative_to(ROOT)), "variants": {}}
    if "fp32" not in args.skip:
        result["variants"]["fp32 (PyTorch)"] = {
            "seconds": 0.0,
            **measure(model, work, "fp32", "perplexity", 1),
        }

    recipe = json.loads(RECIPE.read_text())
    recipe["input_model"]["model_path"] = model
    (work / "recipe.json").write_text(json.dumps(recipe, indent=1))
    if "recipe" not in args.skip:
        seconds = olivepress("run", "--config", "recipe.json", cwd=work)
        result["variants"]["Olive CPU int4 recipe"] = {
            "seconds": seconds,
            **measure(
                str(work / recipe["output_dir"] / "model"), work, "recipe", metrics, args.decode_tokens
            ),
        }
    if "with_eval" not in args.skip:
        result["with_eval"] = with_eval_row(model, work)
    if "defaults" not in args.skip:
        seconds = olivepress("quantize", "-m", model, "--algorithm", "gptq", "-o", "gptq", cwd=work)
        seconds += olivepress("auto-opt", "-m", "gptq/model", "--use_ort_genai", "-o", "auto-opt", cwd=work)
        result["variants"]["quantize gptq -> auto-opt"] = {
            "seconds": seconds,
            **measure(str(work / "auto-opt" / "model"), work, "defaults", metrics, args.decode_tokens),
        }
        builder_only = {
            "input_model": {"model_path": str(work / "gptq" / "model")},
            "passes": {"b": {"type": "ModelBuilder", "precision": "int4"}},
            "output_dir": "builder-only",
            "cache_dir": "cache_cpu_int4",
        }
        (work / "builder-only.json").write_text(json.dumps(builder_only))
        seconds = olivepress("run", "--config", "builder-only.json", cwd=work)
        result["variants"]["gptq -> ModelBuilder alone (before)"] = {
            "seconds": seconds,
            **measure(str(work / "builder-only" / "model"), work, "before", "size_on_disk", 1),
        }

    reference = result["variants"].get("fp32 (PyTorch)", {}).get("perplexity.perplexity")
    for name, values in result["variants"].items():
        ppl = values.get("perplexity.perplexity")
        rows.append(
            [
                name,
                f"{ppl:.2f}" if ppl else "-",
                f"{(ppl / reference - 1):+.1%}" if ppl and reference and name != "fp32 (PyTorch)" else "",
                f"{values['size_on_disk.size_mb']:.1f}" if "size_on_disk.size_mb" in values else "-",
                f"{values['throughput.decode_tokens_per_s']:.1f}"
                if "throughput.decode_tokens_per_s" in values
                else "-",
                f"{values['seconds']:.0f}",
            ]
        )
    print_table(
        f"Olive's CPU int4 recipe on {args.model}",
        ["output", "perplexity", "vs fp32", "size MB", "decode tok/s", "build s"],
        rows,
    )
    if "with_eval" in result:
        print(f"\n_with_eval: {json.dumps(result['with_eval'], indent=1)}")
    print(f"outputs in {work}; results: {write_result('olive_recipes', result)}")


if __name__ == "__main__":
    main()

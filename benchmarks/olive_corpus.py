"""Olive's public recipe configs, run unchanged but for the model: does `olivepress run` take them?

The corpus is tests/olive_recipes/corpus/ (configs copied byte for byte from microsoft/olive-recipes
and microsoft/Olive's former examples/ folder; sources.json says where each came from). For each
config this script:

1. swaps the model and nothing else: `input_model.model_path` (the only key that names a model in
   these configs) becomes MODEL, by default `default`, the embedded SmolLM2-135M-Instruct, a
   decoder LLM like every model the corpus names; everything else, output_dir and cache_dir
   included, is left as written, and the config runs in a fresh working folder of its own;
2. runs `python -m olivepress run --config FILE` there in a fresh process, offline
   (HF_HUB_OFFLINE=1), under a per-config timeout;
3. records: ran, and its output has what the config asks for (an ORT GenAI folder when a pass
   makes ONNX, an adapter when a LoRA-family pass trains one, a quantized checkpoint when a
   PyTorch quantizer is the last pass, metrics when it names an evaluator); or the one line it
   printed last (exit code, time); or timed out. A run that fell back from the hub's wikitext
   to the shipped calibration text says so in its notes.

    nice -n 19 python benchmarks/olive_corpus.py                    # all of them
    nice -n 19 python benchmarks/olive_corpus.py --only rtn hqq     # names containing these
    nice -n 19 python benchmarks/olive_corpus.py --timeout 600 --model ../shared/models/x.gguf
    nice -n 19 python benchmarks/olive_corpus.py --merge --only gptq   # rerun some, keep the rest
    nice -n 19 python benchmarks/olive_corpus.py --local_tasks --only eval   # lm-eval tasks -> shipped one
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
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, print_table, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "olive_recipes" / "corpus"
SOURCES = CORPUS / "sources.json"

LOCAL_TASK = "olivepress_travel_mc"  # shipped with olivepress: lm-eval runs it offline
ONNX_MAKERS = {
    "modelbuilder",
    "onnxconversion",
    "graphsurgeries",
    "onnxhqqquantization",
    "onnxblockwisertnquantization",
    "onnxmatmul4quantizer",
    "extractadapters",
}
# What a run printed that is worth a note beside its result (marker -> note).
NOTES = {
    "calibrating on the shipped calibration text": "hub wikitext -> shipped calibration text",
}
# PyTorch quantizers: a last pass of these leaves a quantized Hugging Face checkpoint.
CHECKPOINT_MAKERS = {"gptq", "gptqquantizer", "awq", "autoawqquantizer", "rtn"}
ADAPTER_MAKERS = {"lora", "qlora", "loftq", "dora", "loha", "lokr"}


def corpus_files() -> list[Path]:
    return sorted(path for path in CORPUS.glob("*.json") if path != SOURCES)


def swap_model(raw: dict[str, Any], model: str, local_tasks: bool = False) -> dict[str, Any]:
    """The config with input_model.model_path set to `model`; nothing else changes, unless
    `local_tasks`: then each LMEvaluator's tasks become the shipped olivepress_travel_mc too."""
    swapped = json.loads(json.dumps(raw))
    swapped["input_model"]["model_path"] = model
    if local_tasks:
        for evaluator in (swapped.get("evaluators") or {}).values():
            if isinstance(evaluator, dict) and evaluator.get("type") == "LMEvaluator":
                evaluator["tasks"] = [LOCAL_TASK]
    return swapped


def asked_for(raw: dict[str, Any]) -> list[str]:
    """What a finished run of this config must have produced."""
    kinds = [str(p.get("type", "")).lower() for p in (raw.get("passes") or {}).values()]
    wants = []
    if any(kind in ONNX_MAKERS for kind in kinds):
        wants.append("genai")
    if any(kind in ADAPTER_MAKERS for kind in kinds) and "extractadapters" not in kinds:
        wants.append("adapter")
    if "extractadapters" in kinds:
        wants.append("adapter_weights")
    if kinds and kinds[-1] in CHECKPOINT_MAKERS:
        wants.append("quantized_checkpoint")
    if raw.get("evaluator") or (raw.get("engine") or {}).get("evaluator"):
        wants.append("metrics")
    return wants


def found(work: Path, wants: list[str]) -> list[str]:
    """Which of `wants` the run left under `work` (any output folder: configs name their own)."""
    footprints = list(work.rglob("footprint.json"))
    present = []
    if "genai" in wants and any((fp.parent / "model" / "genai_config.json").is_file() for fp in footprints):
        present.append("genai")
    if "adapter" in wants and any(
        (fp.parent / "adapter").is_dir() or (fp.parent / "model" / "adapter_config.json").is_file()
        for fp in footprints
    ):
        present.append("adapter")
    if "adapter_weights" in wants and any(
        list((fp.parent / "model").glob("*.onnx_adapter")) or list((fp.parent / "model").rglob("*adapter*"))
        for fp in footprints
    ):
        present.append("adapter_weights")
    if "quantized_checkpoint" in wants and any(_is_quantized(fp.parent / "model") for fp in footprints):
        present.append("quantized_checkpoint")
    if "metrics" in wants and any(_has_metrics(fp) for fp in footprints):
        present.append("metrics")
    return present


def _is_quantized(model_dir: Path) -> bool:
    config = model_dir / "config.json"
    return config.is_file() and "quantization_config" in json.loads(config.read_text())


def _has_metrics(footprint: Path) -> bool:
    """Metrics of the input model, or of an evaluated output (footprint evaluations' candidates)."""
    data = json.loads(footprint.read_text())
    candidates = [c for e in data.get("evaluations") or [] for c in e.get("candidates") or []]
    return bool(data.get("metrics") or data.get("input_metrics") or any(c.get("metrics") for c in candidates))


def last_line(text: str) -> str:
    """The one line a failed run ended on: its last non-empty line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(printed nothing)"


def run_one(path: Path, model: str, timeout: int, local_tasks: bool = False) -> dict[str, Any]:
    raw = json.loads(path.read_text())
    wants = asked_for(raw)
    with tempfile.TemporaryDirectory(prefix="olive-corpus-") as tmp:
        work = Path(tmp)
        (work / path.name).write_text(json.dumps(swap_model(raw, model, local_tasks), indent=2))
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "olivepress", "run", "--config", path.name],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {
                "config": path.name,
                "status": "timeout",
                "seconds": timeout,
                "wants": wants,
                "line": f"timed out after {timeout} s",
            }
        seconds = time.perf_counter() - started
        printed = done.stdout + done.stderr
        notes = [note for marker, note in NOTES.items() if marker in printed]
        if done.returncode != 0:
            return {
                "config": path.name,
                "status": "error",
                "exit_code": done.returncode,
                "seconds": seconds,
                "wants": wants,
                "line": last_line(done.stderr or done.stdout),
                "notes": notes,
            }
        present = found(work, wants)
        missing = [want for want in wants if want not in present]
        return {
            "config": path.name,
            "status": "runs" if not missing else "incomplete",
            "exit_code": 0,
            "seconds": seconds,
            "wants": wants,
            "found": present,
            "line": "" if not missing else f"exit 0 but no {', '.join(missing)} in the output",
            "notes": notes,
        }


def _earlier_results(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    path = RESULTS / f"{_result_name(args)}.json"
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    if earlier.get("model") != args.model:
        raise SystemExit(f"--merge: {path} is for model {earlier.get('model')}, not {args.model}")
    return {r["config"]: r for r in earlier["results"] if (CORPUS / r["config"]).is_file()}


def _result_name(args: argparse.Namespace) -> str:
    return "olive_corpus_local_tasks" if args.local_tasks else "olive_corpus"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="What model_path becomes (default: default).")
    parser.add_argument("--timeout", type=int, default=900, help="Seconds per config (default 900).")
    parser.add_argument("--only", nargs="*", default=[], help="Run only configs whose name has one of these.")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="Replace only these configs' rows in the last results JSON (after fixing some of them).",
    )
    parser.add_argument(
        "--local_tasks",
        action="store_true",
        help=f"Also swap each LMEvaluator's tasks for the shipped {LOCAL_TASK} (not 'unchanged': "
        "shows what the *_with_eval configs do once their task's data is here).",
    )
    args = parser.parse_args()
    files = [p for p in corpus_files() if not args.only or any(word in p.name for word in args.only)]
    earlier = _earlier_results(args) if args.merge else {}
    results = []
    for path in files:
        print(f"running {path.name} ...", flush=True)
        result = run_one(path, args.model, args.timeout, args.local_tasks)
        print(f"  {result['status']} in {result['seconds']:.0f} s {result['line']}", flush=True)
        results.append(result)
    fresh = {r["config"] for r in results}
    results = sorted(
        [*results, *(r for name, r in earlier.items() if name not in fresh)], key=lambda r: r["config"]
    )
    rows = [
        [r["config"], r["status"], f"{r['seconds']:.0f}", r.get("exit_code", "-"), r["line"]] for r in results
    ]
    print_table(
        "Olive recipe corpus, model_path -> "
        + args.model
        + (f", tasks -> {LOCAL_TASK}" if args.local_tasks else ""),
        ["config", "result", "s", "exit", "one line"],
        rows,
    )
    runs = sum(r["status"] == "runs" for r in results)
    print(f"\n{runs} of {len(results)} run unchanged (but for the model)")
    write_result(
        _result_name(args),
        {
            "model": args.model,
            "timeout_s": args.timeout,
            "runs": runs,
            "total": len(results),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()

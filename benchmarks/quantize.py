"""CPU quantizers on the embedded SmolLM2-135M-Instruct: time, quality, size.

For RTN, AWQ and GPTQ at 4 bits with group sizes 128 and 32 (defaults otherwise):

- wall time of the seed's command (`olivepress quantize --model_name_or_path M
  --trust_remote_code --algorithm A --output_path O --log_level 1`, plus --group_size) in a
  fresh process: imports, loading, calibration, quantization, writing the checkpoint.
  Target: AWQ under 60 s on a 2-core machine;
- perplexity on held-out text (the package's held-out prose and the travel data's responses)
  of the checkpoint as load_causal_lm loads it. Target: AWQ's and GPTQ's increase over fp32
  at most 0.6x RTN's at the same group size;
- size of the checkpoint's weights. Target: at most 0.3x the fp32 folder.

    python benchmarks/quantize.py                       # everything (about 15 minutes on 2 cores)
    python benchmarks/quantize.py --algorithms awq --groups 128
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

from _common import print_table, write_result

TRAVEL = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "travel" / "data_sample_travel.jsonl"
)
PPL_SEQ_LEN = 512
MAX_PPL_RATIO = 0.6
MAX_SIZE_RATIO = 0.3
AWQ_SECONDS = 60.0


def held_out_texts() -> dict[str, str]:
    from olivepress.data.calibration import heldout_names, heldout_text

    texts = {name: heldout_text(name) for name in heldout_names()}
    if TRAVEL.is_file():
        lines = TRAVEL.read_text(encoding="utf-8").splitlines()
        texts["travel_responses"] = "\n\n".join(
            json.loads(line)["response"] for line in lines if line.strip()
        )
    return texts


def weights_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def measure_perplexities(folder: Path, texts: dict[str, str]) -> dict[str, float]:
    from olivepress.evaluate.perplexity import perplexity
    from olivepress.models.handles import HfModel
    from olivepress.models.loading import load_causal_lm, load_tokenizer

    handle = HfModel(path=str(folder))
    model, tokenizer = load_causal_lm(handle), load_tokenizer(handle)
    return {
        name: perplexity(model, tokenizer, text, seq_len=PPL_SEQ_LEN, stride=PPL_SEQ_LEN)
        for name, text in texts.items()
    }


def run_seed_command(algorithm: str, source: Path, group: int, out: Path) -> float:
    """Wall time of the seed's command line (fresh process: imports, load, calibrate, write)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    command = [
        sys.executable,
        "-m",
        "olivepress",
        "quantize",
        "--model_name_or_path",
        str(source),
        "--trust_remote_code",
        "--algorithm",
        algorithm,
        "--group_size",
        str(group),
        "--output_path",
        str(out),
        "--cache_dir",
        str(out.parent / f"cache-{out.name}"),
        "--log_level",
        "1",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{algorithm} g{group} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algorithms", nargs="+", default=["rtn", "awq", "gptq"])
    parser.add_argument("--groups", nargs="+", type=int, default=[128, 32])
    parser.add_argument("--model", default=None, help="HF folder (default: the embedded SmolLM2)")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from olivepress.models.default import embedded_model_folder

    source = Path(args.model) if args.model else embedded_model_folder()
    texts = held_out_texts()
    fp32 = measure_perplexities(source, texts)
    fp32_bytes = weights_bytes(source)
    rows, results = [["fp32", "-", "-", *fp32.values(), fp32_bytes / 1e6, 1.0]], []
    with tempfile.TemporaryDirectory(prefix="olivepress-bench-") as tmp:
        for group in args.groups:
            for algorithm in args.algorithms:
                out = Path(tmp) / f"{algorithm}-g{group}"
                seconds = run_seed_command(algorithm, source, group, out)
                ppl = measure_perplexities(out / "model", texts)
                size = weights_bytes(out / "model")
                results.append(
                    {
                        "algorithm": algorithm,
                        "group_size": group,
                        "seconds": seconds,
                        "perplexity": ppl,
                        "bytes": size,
                        "size_ratio": size / fp32_bytes,
                    }
                )
                rows.append([algorithm, group, seconds, *ppl.values(), size / 1e6, size / fp32_bytes])
                print(f"{algorithm} g{group}: {seconds:.1f} s, {ppl}", flush=True)

    checks = []
    for r in results:
        rtn = next(
            (x for x in results if x["algorithm"] == "rtn" and x["group_size"] == r["group_size"]), None
        )
        if r["algorithm"] != "rtn" and rtn:
            for text, value in r["perplexity"].items():
                ratio = (value - fp32[text]) / max(rtn["perplexity"][text] - fp32[text], 1e-9)
                checks.append(
                    [
                        f"{r['algorithm']} g{r['group_size']} {text}: increase / RTN's",
                        ratio,
                        ratio <= MAX_PPL_RATIO,
                    ]
                )
        checks.append(
            [
                f"{r['algorithm']} g{r['group_size']}: size / fp32",
                r["size_ratio"],
                r["size_ratio"] <= MAX_SIZE_RATIO,
            ]
        )
        if r["algorithm"] == "awq":
            checks.append([f"awq g{r['group_size']}: seconds", r["seconds"], r["seconds"] <= AWQ_SECONDS])

    print_table(
        "Quantizers on " + source.name, ["algorithm", "group", "seconds", *texts, "MB", "size/fp32"], rows
    )
    print_table("Targets", ["check", "value", "met"], checks)
    write_result(
        "quantize",
        {
            "model": str(source),
            "cpu_threads": os.cpu_count(),
            "fp32": fp32,
            "fp32_bytes": fp32_bytes,
            "results": results,
            "checks": [{"check": c, "value": v, "met": m} for c, v, m in checks],
        },
    )


if __name__ == "__main__":
    main()

"""Decode and prefill speed: olivepress's int4 ORT GenAI models against llama.cpp, same GGUF, same CPU.

For each model, llama.cpp (llama-cpp-python, built from source with -DGGML_NATIVE=ON in its
own environment) runs the GGUF file the olivepress model was made from, in a worker process;
olivepress's models run here. Rounds are taken in turn (llama.cpp, then every olivepress
variant, then again), so load from other jobs on a shared machine hits every row alike; the
table gives the median of the rounds. Both sides get the same token ids (olivepress's
tokenizer), greedy decoding, every new token forced, the same thread count.

- smollm2: the embedded SmolLM2-135M-Instruct (Q4_1 GGUF); olivepress's side is the seed lab's
  output (quantize AWQ -> finetune LoRA -> auto-opt), with no adapter and with the lab's
  adapter stored at each precision.
- qwen2.5-0.5b: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, ../shared/models/fetch.sh);
  olivepress's side is `quantize --algorithm gptq` -> `auto-opt` with defaults.

    python benchmarks/decode.py --llama-python /path/to/venv/bin/python   # ~30 min on 2 cores
    python benchmarks/decode.py --models smollm2 --work /tmp/decode        # keep and reuse builds

Without --llama-python, a virtual environment is made in benchmarks/.llama-venv and
llama-cpp-python is built into it (about 5 minutes on 2 cores, once).
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
from adapter_precision import PRECISIONS
from adapter_precision import build as build_at_precision
from auto_opt import olivepress, peak_rss_mb, run_lab

ROOT = Path(__file__).resolve().parents[1]
FETCH = ROOT.parent / "shared" / "models" / "fetch.sh"
LLAMA_VENV = Path(__file__).parent / ".llama-venv"
DECODE_PROMPT = "What should I pack for a week in Iceland in winter?"


def llama_python(given: Path | None) -> Path:
    """The Python that has llama-cpp-python: the given one, or one built here once."""
    if given:
        return given
    python = LLAMA_VENV / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(LLAMA_VENV)], check=True)
    if subprocess.run([str(python), "-c", "import llama_cpp"], capture_output=True).returncode != 0:
        print("building llama-cpp-python from source (about 5 minutes)...", flush=True)
        env = dict(os.environ, CMAKE_ARGS="-DGGML_NATIVE=ON")
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "llama-cpp-python"], env=env, check=True
        )
    return python


class LlamaWorker:
    """llama.cpp in its own process (benchmarks/llama_worker.py), asked one request a line."""

    def __init__(self, python: Path, gguf: Path, threads: int, context: int):
        self.process = subprocess.Popen(
            [
                str(python),
                str(Path(__file__).parent / "llama_worker.py"),
                str(gguf),
                str(threads),
                str(context),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._read()  # {"ready": true} once the model is loaded

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(
                "the llama.cpp worker stopped; run benchmarks/llama_worker.py by hand to see why"
            )
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def ours_speed(model, adapter: str | None, prompt_ids: list[int], new_tokens: int) -> dict[str, float]:
    """Prefill tokens/s (the prompt up to the first token) and decode tokens/s (new_tokens more)."""

    generator = model.forced_generator(len(prompt_ids), new_tokens + 1, adapter)
    started = time.perf_counter()
    generator.append_tokens(prompt_ids)  # computes the prompt's logits and so the first token
    prefill_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(new_tokens):
        generator.generate_next_token()
    decode_seconds = time.perf_counter() - started
    return {"prefill_tok_s": len(prompt_ids) / prefill_seconds, "decode_tok_s": new_tokens / decode_seconds}


def prefill_prompt(tokenizer, length: int) -> list[int]:
    """`length` tokens of the prose olivepress ships: the same ids go to both sides."""
    from olivepress.data.shipped import heldout_text

    return [int(token) for token in tokenizer.encode(heldout_text())][:length]


def build_smollm2(work: Path) -> tuple[Path, dict[str, Path]]:
    """The lab's output (its adapter in fp32), and the same lab built with the adapter stored at
    each other precision (auto-opt --adapter_precision: the graph reads the stored type)."""
    from olivepress.models.default import embedded_gguf_file

    run_lab(work)
    return embedded_gguf_file(), {precision: build_at_precision(work, precision) for precision in PRECISIONS}


def build_qwen(work: Path) -> tuple[Path, dict[str, Path]]:
    done = subprocess.run(
        ["bash", str(FETCH), "qwen2.5-coder-0.5b-instruct"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"could not fetch Qwen2.5-Coder-0.5B-Instruct:\n{done.stderr[-2000:]}")
    gguf = Path(done.stdout.strip().splitlines()[-1])
    gptq, built = work / "qwen-gptq", work / "qwen-onnx"
    if not (gptq / ".olivepress-output").is_file():
        olivepress(
            "quantize",
            "--algorithm",
            "gptq",
            "-m",
            str(gguf),
            "-o",
            str(gptq),
            "--cache_dir",
            str(work / "cache"),
        )
    if not (built / ".olivepress-output").is_file():
        olivepress("auto-opt", "-m", str(gptq), "-o", str(built), "--cache_dir", str(work / "cache"))
    return gguf, {"": built}


BUILDERS = {"smollm2": build_smollm2, "qwen2.5-0.5b": build_qwen}


def measure_model(name: str, work: Path, python: Path, args: argparse.Namespace) -> dict:
    from olivepress.runtime.generate import BASE, GenAIModel

    gguf, builds = BUILDERS[name](work)
    models = {precision: GenAIModel(folder) for precision, folder in builds.items()}
    first = next(iter(models.values()))
    decode_ids = first.encode(first.format_prompt(DECODE_PROMPT))
    prefill_ids = prefill_prompt(first.tokenizer, args.prefill_tokens)
    # label -> (model, adapter): no adapter on the first build, then each build's own adapter
    variants = {"olivepress, no adapter": (first, BASE if first.adapter_names else None)}
    variants.update(
        {
            f"olivepress, adapter {precision}": (model, model.adapter_names[0])
            for precision, model in models.items()
            if model.adapter_names
        }
    )
    for label, folder in args.extra.get(name, {}).items():  # other builds of the same GGUF
        variants[f"olivepress, {label}"] = (GenAIModel(folder), None)

    llama = LlamaWorker(python, gguf, args.threads, len(prefill_ids) + args.new_tokens + 8)
    rows: dict[str, list[dict[str, float]]] = {"llama.cpp": [], **{v: [] for v in variants}}

    def one_round() -> list[tuple[str, dict[str, float]]]:
        results = []
        for ids, kind in ((decode_ids, "decode"), (prefill_ids, "prefill")):
            new = args.new_tokens if kind == "decode" else 1
            results.append(("llama.cpp", kind, llama.ask(prompt_tokens=ids, new_tokens=new)))
            for label, (model, adapter) in variants.items():
                results.append((label, kind, ours_speed(model, adapter, ids, new)))
        merged: dict[str, dict[str, float]] = {}
        for label, kind, speed in results:
            merged.setdefault(label, {})[f"{kind}_tok_s"] = speed[f"{kind}_tok_s"]
        return list(merged.items())

    one_round()  # warm-up, untimed
    for index in range(args.rounds):
        for label, speed in one_round():
            rows[label].append(speed)
        print(f"{name}: round {index + 1}/{args.rounds} done", flush=True)
    memory = {
        "llama.cpp": llama.ask(peak_rss_mb=True)["peak_rss_mb"],
        "olivepress": peak_rss_mb(next(iter(builds.values())) / "model"),
    }
    llama.close()

    summary = {}
    for label, speeds in rows.items():
        summary[label] = {
            key: statistics.median(s[key] for s in speeds) for key in ("decode_tok_s", "prefill_tok_s")
        }
        summary[label]["rounds"] = speeds
    return {
        "gguf": str(gguf),
        "builds": {k: str(v) for k, v in builds.items()},
        "speeds": summary,
        "peak_rss_mb": memory,
        "decode_prompt_tokens": len(decode_ids),
        "prefill_prompt_tokens": len(prefill_ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", default="smollm2,qwen2.5-0.5b", help="Comma-separated: " + ", ".join(BUILDERS)
    )
    parser.add_argument("--llama-python", type=Path, help="A Python with llama-cpp-python installed.")
    parser.add_argument("--work", type=Path, help="Folder to keep (and reuse) the olivepress builds in.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prefill-tokens", type=int, default=256)
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="MODEL:LABEL=FOLDER",
        help="Also time this ORT GenAI folder (built from MODEL's GGUF, e.g. by Olive's recipe) as LABEL.",
    )
    args = parser.parse_args()
    extras: dict[str, dict[str, Path]] = {}
    for spec in args.extra:
        model, _, rest = spec.partition(":")
        label, _, folder = rest.partition("=")
        if not (label and Path(folder, "genai_config.json").is_file()):
            raise SystemExit(f"--extra {spec!r}: expected MODEL:LABEL=FOLDER with an ORT GenAI folder")
        extras.setdefault(model, {})[label] = Path(folder)
    args.extra = extras
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in BUILDERS]
    if unknown:
        raise SystemExit(f"unknown model {unknown[0]!r}; choose from {', '.join(BUILDERS)}")
    python = llama_python(args.llama_python)

    results = {}
    with tempfile.TemporaryDirectory(prefix="olivepress-decode-") as tmp:
        work = args.work or Path(tmp)
        for name in names:
            (work / name).mkdir(parents=True, exist_ok=True)
            results[name] = measure_model(name, work / name, python, args)

    for name, result in results.items():
        base = result["speeds"]["llama.cpp"]
        rows = [
            [
                label,
                s["decode_tok_s"],
                s["decode_tok_s"] / base["decode_tok_s"],
                s["prefill_tok_s"],
                s["prefill_tok_s"] / base["prefill_tok_s"],
            ]
            for label, s in result["speeds"].items()
        ]
        print_table(
            f"{name}: greedy, {args.new_tokens} new tokens, {result['prefill_prompt_tokens']}-token prefill, "
            f"{args.threads} threads, median of {args.rounds}",
            ["variant", "decode tok/s", "x llama.cpp", "prefill tok/s", "x llama.cpp"],
            rows,
        )
        print_table(
            f"{name}: peak memory (MB)", ["runtime", "MB"], list(map(list, result["peak_rss_mb"].items()))
        )
    write_result(
        "decode",
        {"threads": args.threads, "rounds": args.rounds, "new_tokens": args.new_tokens, "models": results},
    )


if __name__ == "__main__":
    main()

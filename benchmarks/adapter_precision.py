"""The lab adapter at each storage precision: its bytes, its quality cost, its decode speed.

The seed lab's output (benchmarks/auto_opt.py's run_lab: AWQ -> LoRA on the travel data ->
auto-opt int4) is rebuilt with `auto-opt --adapter_precision P` for fp16, int8 and int4
(the builder's pass is cached, so only ExtractAdapters runs again). For each precision:

- bytes of the .onnx_adapter;
- mean |Δlogits| against the fp32 adapter (teacher-forced, every position of travel samples)
  and how often the top token differs;
- loss on those samples (cross-entropy of each next token) and its change against fp32;
- decode tokens/s with the adapter active (greedy, NEW_TOKENS forced, median of ROUNDS).

    python benchmarks/adapter_precision.py --reuse DIR   # DIR: the lab's folders (auto_opt.py --reuse)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from _common import print_table, write_result
from auto_opt import TEMPLATE, TRAVEL, decode_tokens_per_s, olivepress, run_lab

PRECISIONS = ("fp32", "fp16", "int8", "int4")
SAMPLES = 32  # the data set's last rows
ROUNDS = 3


def build(work: Path, precision: str) -> Path:
    """The lab's auto-opt output with the adapter stored at `precision`."""
    if precision == "fp32":
        return work / "onnx-ao"
    out = work / f"onnx-ao-{precision}"
    if not (out / ".olivepress-output").is_file():
        olivepress(
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
            "--adapter_precision",
            precision,
            "--skip_check",
            "--output_path",
            str(out),
            "--cache_dir",
            str(work / "cache"),
            "--log_level",
            "3",
        )
    return out


def samples() -> list[str]:
    rows = [json.loads(line) for line in TRAVEL.read_text().splitlines() if line.strip()]
    return [TEMPLATE.replace("\\n", "\n").format(**row) for row in rows[-SAMPLES:]]


def logits_and_loss(model, adapter: str, texts: list[str]):
    import numpy as np

    all_logits, losses = [], []
    for text in texts:
        ids = model.encode(text)
        logits = model.logits(ids, adapter=adapter).astype(np.float64)
        shifted = logits[:-1] - logits[:-1].max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        losses.append(-log_probs[np.arange(len(ids) - 1), ids[1:]])
        all_logits.append(logits)
    return np.concatenate(all_logits), float(np.concatenate(losses).mean())


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reuse", type=Path, required=True, help="Work folder of the lab's outputs.")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.reuse.mkdir(parents=True, exist_ok=True)
    run_lab(args.reuse)

    from olivepress.runtime.generate import BASE, GenAIModel

    texts = samples()
    models = {precision: GenAIModel(build(args.reuse, precision)) for precision in PRECISIONS}
    adapter = models["fp32"].adapter_names[0]
    reference, reference_loss = logits_and_loss(models["fp32"], adapter, texts)
    _, base_loss = logits_and_loss(models["fp32"], BASE, texts)
    rows, results = [], {}
    prompt = "What should I pack for a week in Iceland in winter?"
    for precision, model in models.items():
        logits, loss = logits_and_loss(model, adapter, texts)
        speeds = [decode_tokens_per_s(model, adapter, prompt) for _ in range(ROUNDS)]
        no_adapter = [decode_tokens_per_s(model, BASE, prompt) for _ in range(ROUNDS)]
        size = (model.folder / "adapter_weights.onnx_adapter").stat().st_size
        results[precision] = {
            "adapter_bytes": size,
            "mean_abs_dlogits": float(np.abs(logits - reference).mean()),
            "top1_changed": float((logits.argmax(1) != reference.argmax(1)).mean()),
            "loss": loss,
            "loss_change": (loss - reference_loss) / reference_loss,
            "decode_tok_s": statistics.median(speeds),
            "no_adapter_tok_s": statistics.median(no_adapter),
        }
        r = results[precision]
        rows.append(
            [
                precision,
                size / 1e6,
                r["mean_abs_dlogits"],
                r["top1_changed"],
                loss,
                f"{100 * r['loss_change']:+.3f}%",
                r["decode_tok_s"],
                r["decode_tok_s"] / r["no_adapter_tok_s"],
            ]
        )
    print_table(
        f"Lab adapter by storage precision ({SAMPLES} travel samples; base model loss {base_loss:.3f})",
        [
            "precision",
            "MB",
            "mean |Δlogits| vs fp32",
            "top-1 changed",
            "loss",
            "Δ loss",
            "decode tok/s",
            "vs no adapter",
        ],
        rows,
    )
    write_result(
        "adapter_precision",
        {"samples": SAMPLES, "rounds": ROUNDS, "base_loss": base_loss, "precisions": results},
    )


if __name__ == "__main__":
    main()

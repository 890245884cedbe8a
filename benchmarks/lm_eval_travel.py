"""The shipped lm-eval task on the embedded model: fp32 PyTorch against its int4 ORT GenAI build.

Builds the int4 model with a ModelBuilder pass (the auto-opt path), then runs
olivepress_travel_mc (40 four-choice questions) on both with the lm_eval metric and prints
acc, acc_norm and the seconds each took.

    python benchmarks/lm_eval_travel.py [--batch_size 8] [--work_dir /tmp/olivepress-lm-eval]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import print_table, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--work_dir", default="/tmp/olivepress-lm-eval")
    args = parser.parse_args()

    from olivepress.api import run
    from olivepress.evaluate.config import EvaluatorConfig
    from olivepress.evaluate.evaluator import evaluate_model
    from olivepress.models.default import embedded_model_folder
    from olivepress.models.handles import HfModel, OnnxModel

    work = Path(args.work_dir)
    started = time.perf_counter()
    run(
        {
            "input_model": {"model_path": "default"},
            "passes": {"builder": {"type": "ModelBuilder", "precision": "int4"}},
            "output_dir": str(work / "int4"),
            "cache_dir": str(work / "cache"),
        },
        summary=False,
        log_level=3,
    )
    build_s = time.perf_counter() - started

    evaluator = EvaluatorConfig.model_validate(
        {
            "metrics": [
                {
                    "name": "travel",
                    "type": "lm_eval",
                    "task": "olivepress_travel_mc",
                    "batch_size": args.batch_size,
                }
            ]
        }
    )
    models = {
        "fp32 PyTorch": HfModel(path=str(embedded_model_folder())),
        "int4 ORT GenAI": OnnxModel(path=str(work / "int4" / "model")),
    }
    rows, measured = [], {}
    for label, model in models.items():
        started = time.perf_counter()
        results = evaluate_model(model, evaluator)
        seconds = time.perf_counter() - started
        measured[label] = {name: value.value for name, value in results.items()} | {"seconds": seconds}
        rows.append([label, results["travel.acc"].value, results["travel.acc_norm"].value, seconds])
    delta = measured["int4 ORT GenAI"]["travel.acc"] - measured["fp32 PyTorch"]["travel.acc"]
    print_table(
        f"olivepress_travel_mc (40 questions), SmolLM2-135M-Instruct; int4 build {build_s:.0f} s",
        ["model", "acc", "acc_norm", "seconds"],
        rows,
    )
    print(f"\nint4 - fp32 acc: {delta:+.3f}")
    write_result("lm_eval_travel", {"batch_size": args.batch_size, "build_s": build_s, "models": measured})


if __name__ == "__main__":
    main()

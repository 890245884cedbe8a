"""A search on the embedded model: int4 block size x accuracy level, goal on perplexity,
objective decode speed; then the same run again (every pass cached), latency measured twice,
and the one-line errors for configs that cannot search.

Config: ModelBuilder int4 on SmolLM2-135M-Instruct with int4_block_size in {32, 64, 128},
int4_accuracy_level in {0, 4} and quantize_embeddings in {true, false} (12 candidates), goal
"perplexity at most 10% worse than the input model" and objective "decode tokens/s, higher is better".

    OMP_NUM_THREADS=2 python benchmarks/search.py
    OMP_NUM_THREADS=2 python benchmarks/search.py --quantizers

--quantizers runs another search on the same model instead: {"type": ["RTN", "AWQ"]}
(group 32) before ModelBuilder int4 (embedding and lm_head kept float, accuracy_level in
{0, 4}), the same goal and objective (decode tokens/s);
result search_quantizers.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_table, write_result

WORK = Path(__file__).parent / ".cache" / "search"

EVALUATOR = {
    "metrics": [
        {
            "name": "ppl",
            "type": "perplexity",
            "seq_len": 256,
            "sub_types": [{"name": "perplexity", "goal": {"type": "percent-max-degradation", "value": 10}}],
        },
        {
            "name": "speed",
            "type": "throughput",
            "prompt_tokens": 64,
            "decode_tokens": 32,
            "metric_config": {"warmup_num": 3, "repeat_test_num": 10},
            "sub_types": [{"name": "decode_tokens_per_s", "priority": 1}, "prefill_tokens_per_s"],
        },
        {
            "name": "latency",
            "type": "latency",
            "prompt_tokens": 64,
            "decode_tokens": 32,
            "warmup_runs": 3,
            "timed_runs": 10,
            "sub_types": ["p50", "p90"],
        },
        {"name": "size", "type": "size_on_disk"},
    ]
}

CONFIG = {
    "input_model": {
        "type": "PyTorchModel",
        "config": {"hf_config": {"model_name": "default", "task": "text-generation"}},
    },
    "passes": {
        "builder": {
            "type": "ModelBuilder",
            "config": {
                "precision": "int4",
                "int4_block_size": [32, 64, 128],
                "int4_accuracy_level": [0, 4],
                "quantize_embeddings": [True, False],
            },
        }
    },
    "evaluators": {"common": EVALUATOR},
    "engine": {
        "evaluator": "common",
        "search_strategy": {"execution_order": "joint", "sampler": "sequential"},
        "cache_dir": str(WORK / "cache"),
        "output_dir": str(WORK / "out"),
    },
}

# Configs that cannot search: each must fail with one line saying what to fix.
BAD = {
    "goal on an unknown metric": {
        "evaluators": {
            "common": {
                "metrics": [
                    {
                        "name": "ppl",
                        "type": "perplexity",
                        "sub_types": [{"name": "perplexty", "goal": {"type": "threshold", "value": 20}}],
                    },
                    EVALUATOR["metrics"][1],
                ]
            }
        }
    },
    "search option the pass lacks": {
        "passes": {"builder": {"type": "ModelBuilder", "int4_blocksize": [32, 64]}}
    },
    "objective naming no metric": {
        "engine": {**CONFIG["engine"], "search_strategy": {"objectives": [{"higher_is_better": True}]}}
    },
    "objective naming an unknown metric": {
        "engine": {**CONFIG["engine"], "search_strategy": {"objectives": ["speed.decode"]}}
    },
    "user code without permission": {
        "evaluators": {
            "common": {
                "metrics": [
                    {
                        "name": "mine",
                        "type": "custom",
                        "sub_types": ["score"],
                        "user_config": {"user_script": "my_metric.py", "evaluate_func": "score"},
                    }
                ]
            }
        }
    },
}


def olivepress_run(config: dict, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    path = cwd / "search.json"
    path.write_text(json.dumps(config))
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "olivepress", "run", "--config", str(path)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    return time.perf_counter() - started, result


def latency_twice(model_dir: Path) -> list[dict[str, float]]:
    """The same model measured twice in one process (20 timed runs each)."""
    from olivepress.evaluate.config import EvaluatorConfig
    from olivepress.evaluate.evaluator import evaluate_model
    from olivepress.models.resolve import resolve_model

    evaluator = EvaluatorConfig.model_validate(
        {
            "metrics": [
                {
                    "name": "latency",
                    "type": "latency",
                    "prompt_tokens": 64,
                    "decode_tokens": 32,
                    "warmup_runs": 3,
                    "timed_runs": 20,
                }
            ]
        }
    )
    model = resolve_model(str(model_dir))
    return [{k: v.value for k, v in evaluate_model(model, evaluator).items()} for _ in range(2)]


QUANTIZERS = {
    "input_model": CONFIG["input_model"],
    "passes": {
        "quant": {"type": ["RTN", "AWQ"], "group_size": 32},
        # The embedding and lm_head stay as the quantizer left them (float); accuracy level searched.
        "builder": {
            "type": "ModelBuilder",
            "config": {"precision": "int4", "quantize_embeddings": False, "int4_accuracy_level": [0, 4]},
        },
    },
    # The goal and objective: perplexity at most 10% worse, then the fastest decode.
    "evaluators": {
        "quality": {
            "metrics": [
                EVALUATOR["metrics"][0],
                EVALUATOR["metrics"][1],
                {"name": "size", "type": "size_on_disk"},
            ]
        }
    },
    "engine": {
        "evaluator": "quality",
        "search_strategy": {"execution_order": "joint", "sampler": "sequential"},
        "cache_dir": str(WORK / "cache"),
        "output_dir": str(WORK / "out-quantizers"),
    },
}


def quantizer_search() -> dict:
    seconds, result = olivepress_run(QUANTIZERS, WORK)
    if result.returncode != 0:
        raise SystemExit(f"quantizer search failed:\n{result.stderr}")
    footprint = json.loads((WORK / "out-quantizers" / "footprint.json").read_text())
    (evaluation,) = footprint["evaluations"]
    inputs = footprint["input_metrics"]
    rows = [
        [
            "input (PyTorch fp32)",
            inputs["ppl.perplexity"]["value"],
            inputs["speed.decode_tokens_per_s"]["value"],
            inputs["size.size_mb"]["value"],
            "",
            "",
        ]
    ]
    for c in evaluation["candidates"]:
        built = sum(p["duration_s"] for p in c["passes"] if not p["from_cache"])
        point = (
            f"{c['point']['quant.type']} g32, accuracy_level {c['point'].get('builder.int4_accuracy_level')}"
        )
        rows.append(
            [
                f"{c['index']}{' (chosen)' if c['index'] == evaluation['chosen'] else ''}: {point}",
                c["metrics"]["ppl.perplexity"]["value"],
                c["metrics"]["speed.decode_tokens_per_s"]["value"],
                c["metrics"]["size.size_mb"]["value"],
                f"{built:.0f} s",
                "yes" if c["meets_goals"] else "no",
            ]
        )
    print_table(
        "RTN vs AWQ (group 32) before ModelBuilder int4, searched as the pass type",
        ["candidate", "perplexity", "decode tok/s", "MB", "passes ran", "goal met"],
        rows,
    )
    print(f"chosen: {evaluation['reason']}")
    return {
        "wall_s": round(seconds, 1),
        "input_metrics": footprint["input_metrics"],
        "candidates": evaluation["candidates"],
        "chosen": evaluation["chosen"],
        "reason": evaluation["reason"],
    }


def main() -> None:
    from olivepress.models.default import embedded_model_folder

    embedded_model_folder()  # the one-time GGUF conversion is not part of the timings
    WORK.mkdir(parents=True, exist_ok=True)
    if "--quantizers" in sys.argv[1:]:
        write_result("search_quantizers", quantizer_search())
        return
    first_s, first = olivepress_run(CONFIG, WORK)
    if first.returncode != 0:
        raise SystemExit(f"search failed:\n{first.stderr}")
    footprint = json.loads((WORK / "out" / "footprint.json").read_text())
    (evaluation,) = footprint["evaluations"]
    first_builds = sum(not p["from_cache"] for c in evaluation["candidates"] for p in c["passes"])
    build_s = sum(
        p["duration_s"] for c in evaluation["candidates"] for p in c["passes"] if not p["from_cache"]
    )

    second_s, second = olivepress_run(CONFIG, WORK)
    if second.returncode != 0:
        raise SystemExit(f"second run failed:\n{second.stderr}")
    rerun = json.loads((WORK / "out" / "footprint.json").read_text())["evaluations"][0]
    all_cached = all(p["from_cache"] for c in rerun["candidates"] for p in c["passes"])

    base = footprint["input_metrics"]
    rows = [
        [
            "input (PyTorch fp32)",
            "-",
            "-",
            base["ppl.perplexity"]["value"],
            base["speed.decode_tokens_per_s"]["value"],
            base["speed.prefill_tokens_per_s"]["value"],
            base["latency.p50"]["value"],
            base["size.size_mb"]["value"],
            "",
            "",
        ]
    ]
    for c in evaluation["candidates"]:
        m = c["metrics"]
        rows.append(
            [
                f"{c['index']}{' (chosen)' if c['index'] == evaluation['chosen'] else ''}",
                c["point"]["builder.int4_block_size"],
                c["point"]["builder.int4_accuracy_level"],
                m["ppl.perplexity"]["value"],
                m["speed.decode_tokens_per_s"]["value"],
                m["speed.prefill_tokens_per_s"]["value"],
                m["latency.p50"]["value"],
                m["size.size_mb"]["value"],
                "yes" if c["meets_goals"] else "no",
                "yes" if c["pareto"] else "",
            ]
        )
    print_table(
        "ModelBuilder int4 search on SmolLM2-135M-Instruct (goal: perplexity at most 10% worse; "
        "objective: decode tokens/s)",
        [
            "candidate",
            "block",
            "acc_level",
            "perplexity",
            "decode tok/s",
            "prefill tok/s",
            "p50 ms",
            "MB",
            "goal met",
            "Pareto",
        ],
        rows,
    )
    print(f"\ngoal: ppl.perplexity {evaluation['goals']['ppl.perplexity']}")
    print(f"chosen: {evaluation['reason']}")

    twice = latency_twice(WORK / "out")
    p50_diff = abs(twice[0]["latency.p50"] - twice[1]["latency.p50"]) / min(
        twice[0]["latency.p50"], twice[1]["latency.p50"]
    )
    print_table(
        "Chosen model, latency measured twice in one run (20 timed runs each, 64-token prompt + 32 decoded)",
        ["measurement", "avg ms", "p50 ms", "p90 ms", "p99 ms"],
        [
            [i + 1, t["latency.avg"], t["latency.p50"], t["latency.p90"], t["latency.p99"]]
            for i, t in enumerate(twice)
        ],
    )
    print(f"p50 difference: {p50_diff:.1%} (target < 10%)")

    print_table(
        "Runs",
        ["run", "wall s", "passes built"],
        [
            ["first", first_s, f"{first_builds} ({build_s:.0f} s building)"],
            ["second (identical)", second_s, "none, all cached" if all_cached else "SOME RAN AGAIN"],
        ],
    )

    errors = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, change in BAD.items():
            _, result = olivepress_run({**CONFIG, **change}, Path(tmp))
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            errors[name] = {
                "exit": result.returncode,
                "lines": len(lines),
                "message": lines[-1] if lines else "",
            }
    print_table(
        "Configs that cannot search",
        ["case", "exit", "lines", "message"],
        [[name, e["exit"], e["lines"], e["message"]] for name, e in errors.items()],
    )

    write_result(
        "search",
        {
            "config": CONFIG,
            "input_metrics": base,
            "candidates": evaluation["candidates"],
            "chosen": evaluation["chosen"],
            "reason": evaluation["reason"],
            "goal": evaluation["goals"],
            "first_run_s": round(first_s, 1),
            "first_run_builds": first_builds,
            "second_run_s": round(second_s, 1),
            "second_run_all_cached": all_cached,
            "latency_twice": twice,
            "latency_p50_difference": p50_diff,
            "errors": errors,
            "report": str(WORK / "out" / "report.html"),
        },
    )
    failed = [name for name, e in errors.items() if e["exit"] == 0 or e["lines"] != 1]
    if not all_cached or p50_diff >= 0.1 or failed:
        raise SystemExit(
            f"target missed: cached={all_cached}, p50 difference={p50_diff:.1%}, errors not one line: "
            f"{failed}"
        )


if __name__ == "__main__":
    main()

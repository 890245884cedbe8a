"""The quantizers' perplexity ratios over several calibration draws (seeds).

One draw is which windows of the calibration text the quantizer sees; on SmolLM2 the ratio
(perplexity increase over fp32, as a fraction of RTN's at the same group size) moves by up to
0.1 between draws, so a variant is judged on several. Each pass runs in this process (2
threads on this machine), its checkpoint goes to a temporary folder, and perplexity is that
of benchmarks/quantize.py (held-out prose and the travel answers, 512-token windows).

    python benchmarks/quantize_draws.py                                 # AWQ and GPTQ, g128, seeds 0 1 2
    python benchmarks/quantize_draws.py --algorithms gptq --group 32 --set diag_damp=0.3
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import tempfile
from pathlib import Path

from _common import print_table, write_result
from quantize import held_out_texts, measure_perplexities


def quantized_perplexities(
    algorithm: str, source: Path, texts: dict[str, str], options: dict, work: Path
) -> dict:
    from olivepress.models.handles import HfModel
    from olivepress.passes.base import PassContext

    module = importlib.import_module(f"olivepress.passes.torch.{algorithm}")
    handle = module.run(HfModel(path=str(source)), module.Config(**options), work, PassContext())
    return measure_perplexities(Path(handle.path), texts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algorithms", nargs="+", default=["awq", "gptq"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--group", type=int, default=128)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="OPTION=JSON", help="Pass options, e.g. diag_damp=1.0"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from olivepress.models.default import embedded_model_folder

    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    source, texts = embedded_model_folder(), held_out_texts()
    fp32 = measure_perplexities(source, texts)
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="olivepress-draws-") as tmp:
        rtn = quantized_perplexities("rtn", source, texts, {"group_size": args.group}, Path(tmp) / "rtn")
        for algorithm in args.algorithms:
            ratios: dict[str, list[float]] = {text: [] for text in texts}
            for seed in args.seeds:
                options = {"group_size": args.group, "seed": seed, **overrides}
                ppl = quantized_perplexities(
                    algorithm, source, texts, options, Path(tmp) / f"{algorithm}-{seed}"
                )
                for text in texts:
                    ratios[text].append((ppl[text] - fp32[text]) / max(rtn[text] - fp32[text], 1e-9))
                print(f"{algorithm} seed {seed}: {ppl}", flush=True)
            results.append({"algorithm": algorithm, "ratios": ratios})
            rows.extend(
                [algorithm, text, " / ".join(f"{r:.3f}" for r in values), statistics.mean(values)]
                for text, values in ratios.items()
            )
    title = f"Increase over fp32 / RTN's, g{args.group}, seeds {args.seeds}" + (
        f", {overrides}" if overrides else ""
    )
    print_table(title, ["algorithm", "text", "per seed", "mean"], rows)
    write_result(
        "quantize_draws",
        {
            "group_size": args.group,
            "seeds": args.seeds,
            "options": overrides,
            "fp32": fp32,
            "rtn": rtn,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()

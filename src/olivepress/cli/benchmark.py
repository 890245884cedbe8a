"""`olivepress benchmark -m MODEL`: measure a model folder (HF, ONNX or ORT GenAI) from flags."""

from __future__ import annotations

import argparse
from typing import Any

HELP = (
    "Measure a model (HF, ONNX or ORT GenAI folder): latency, throughput, perplexity, accuracy, size, memory."
)
METRICS = ("latency", "throughput", "perplexity", "accuracy", "size_on_disk", "peak_memory")


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags

    parser = commands.add_parser("benchmark", help=HELP, description=HELP)
    parser.add_argument(
        "-m",
        "--model_name_or_path",
        default="default",
        help="Model folder, olivepress output folder, .gguf file or 'default' (embedded SmolLM2).",
    )
    parser.add_argument(
        "--metrics",
        default="latency,throughput,size_on_disk",
        help=f"Comma-separated metrics: {', '.join(METRICS)} (default latency,throughput,size_on_disk).",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "pytorch", "onnxruntime", "ort-genai"),
        help="Runtime (auto: PyTorch for HF, ORT GenAI for ORT GenAI folders, ONNX Runtime otherwise).",
    )
    parser.add_argument(
        "--provider",
        default="CPUExecutionProvider",
        help="ONNX Runtime execution provider (onnxruntime backend).",
    )
    timing = parser.add_argument_group("latency and throughput")
    timing.add_argument("--warmup_runs", type=int, default=3, help="Untimed runs first (default 3).")
    timing.add_argument("--timed_runs", type=int, default=10, help="Timed runs (default 10).")
    timing.add_argument("--prompt_tokens", type=int, default=64, help="LLM prompt length (default 64).")
    timing.add_argument(
        "--decode_tokens", type=int, default=32, help="LLM tokens generated per run (default 32)."
    )
    timing.add_argument("--batch_size", type=int, default=1, help="Batch of a non-LLM run (default 1).")
    timing.add_argument(
        "--seq_len", type=int, default=128, help="Tokens per non-LLM sample; perplexity window (default 128)."
    )
    data = parser.add_argument_group("accuracy and perplexity data")
    data.add_argument(
        "--data_files", help="Local data file(s), comma-separated (accuracy: records; perplexity: text)."
    )
    data.add_argument(
        "--data_name", default="json", help="Loader: json, csv, parquet or text (default json)."
    )
    data.add_argument(
        "--text_template",
        help=(
            "Perplexity on the data: template turning a record into text, e.g. '{prompt} {response}' "
            "(default: shipped held-out prose)."
        ),
    )
    data.add_argument(
        "--prompt_template",
        default="{prompt}",
        help="Accuracy: the prompt a record becomes (default '{prompt}').",
    )
    data.add_argument(
        "--label_field",
        default="response",
        help="Accuracy: the field with the expected answer (default response).",
    )
    data.add_argument("--max_samples", type=int, default=20, help="Accuracy: records evaluated (default 20).")
    data.add_argument(
        "--max_new_tokens", type=int, default=32, help="Accuracy: tokens generated per record (default 32)."
    )
    data.add_argument(
        "--use_chat_template",
        action="store_true",
        help="Accuracy: wrap prompts in the model's chat template.",
    )
    parser.add_argument(
        "-o",
        "--output_path",
        default="benchmark.json",
        help="JSON file for the results (default benchmark.json).",
    )
    parser.add_argument(
        "--trust_remote_code", action="store_true", help="Allow the model's own code (off unless given)."
    )
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def evaluator_from_flags(args: argparse.Namespace):
    from olivepress.cli.data_flags import split_commas
    from olivepress.data import data_config_from_flags
    from olivepress.errors import OlivepressError, did_you_mean
    from olivepress.evaluate.config import EvaluatorConfig

    names = [name.strip() for name in args.metrics.split(",") if name.strip()]
    for name in names:
        if name not in METRICS:
            raise OlivepressError(
                f"unknown metric '{name}' in --metrics{did_you_mean(name, METRICS)}; choose from "
                f"{', '.join(METRICS)}"
            )
    if not names:
        raise OlivepressError(f"--metrics names no metric; choose from {', '.join(METRICS)}")
    common: dict[str, Any] = {
        key: getattr(args, key)
        for key in (
            "backend",
            "warmup_runs",
            "timed_runs",
            "prompt_tokens",
            "decode_tokens",
            "batch_size",
            "seq_len",
            "prompt_template",
            "label_field",
            "max_samples",
            "max_new_tokens",
            "use_chat_template",
        )
    }
    data = None
    if args.data_files:
        data = data_config_from_flags(
            split_commas(args.data_files),
            data_name=args.data_name,
            text_template=args.text_template,
            name="benchmark",
        )
    elif "accuracy" in names:
        raise OlivepressError(
            "--metrics accuracy needs --data_files: records with the prompt and the expected answer"
        )
    metrics = []
    for name in names:
        metric = {"name": name, "type": name, **common}
        # Perplexity reads the data only through a text template; else the shipped held-out prose.
        if data is not None and (name == "accuracy" or (name == "perplexity" and args.text_template)):
            metric["data_config"] = data
        if name == "accuracy":
            metric["sub_types"] = ["accuracy_score", "exact_match", "rouge_l"]
        if name == "latency":
            metric["sub_types"] = ["avg", "p50", "p90", "p99"]
        metrics.append(metric)
    return EvaluatorConfig.model_validate({"metrics": metrics})


def execute(args: argparse.Namespace) -> int:
    from olivepress.api import benchmark

    benchmark(
        args.model_name_or_path,
        evaluator=evaluator_from_flags(args),
        provider=args.provider,
        output_path=args.output_path,
        trust_remote_code=args.trust_remote_code,
        settings={k: v for k, v in vars(args).items() if k != "execute"},
        log_level=0 if args.debug else args.log_level,
    )
    return 0

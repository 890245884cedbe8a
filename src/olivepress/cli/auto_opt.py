"""`olivepress auto-opt`: a model into an optimised ONNX model for a device and provider.

The flags, then `api.auto_opt`; which path and passes a model gets is in workflow/auto_opt.py.
"""

from __future__ import annotations

import argparse

HELP = (
    "Optimise a model into ONNX for a device and execution provider (ORT GenAI for LLMs, with switchable "
    "LoRA adapters)."
)


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags
    from olivepress.runtime.adapter_precision import BLOCK_SIZES, DEFAULT_BLOCK_SIZE, PRECISIONS

    parser = commands.add_parser("auto-opt", help=HELP, description=HELP)
    parser.add_argument(
        "-m",
        "--model_name_or_path",
        default="default",
        help="HF folder, .gguf file, HF id in the local cache, or 'default' (embedded SmolLM2).",
    )
    parser.add_argument(
        "--adapter_path",
        help="PEFT LoRA adapter to make switchable (written as model/adapter_weights.onnx_adapter).",
    )
    parser.add_argument(
        "--adapter_name", default="default", help="Name the adapter is registered under (default 'default')."
    )
    parser.add_argument(
        "--adapter_precision",
        choices=PRECISIONS,
        default="fp32",
        help="How .onnx_adapter files store the LoRA matrices (default fp32; int8/int4 are "
        "block-quantized, see docs/benchmarks.md for their quality cost).",
    )
    parser.add_argument(
        "--adapter_block_size",
        type=int,
        choices=BLOCK_SIZES,
        default=DEFAULT_BLOCK_SIZE,
        help=f"Values per scale of int8/int4 adapters (default {DEFAULT_BLOCK_SIZE}).",
    )
    parser.add_argument(
        "--device", choices=["cpu", "gpu", "npu"], help="Target device (default: the provider's, else cpu)."
    )
    parser.add_argument(
        "--provider", help="Execution provider, e.g. CPUExecutionProvider (default for the device)."
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "fp16", "bf16", "int8", "int4"],
        default="int4",
        help="Weight precision (default int4).",
    )
    parser.add_argument(
        "--use_ort_genai", action="store_true", help="Build an ORT GenAI model (the LLM path)."
    )
    parser.add_argument(
        "--int4_block_size", type=int, choices=[16, 32, 64, 128, 256], help="Block size of int4 weights."
    )
    parser.add_argument(
        "--int4_accuracy_level",
        type=int,
        choices=range(5),
        metavar="{0..4}",
        help="MatMulNBits compute precision (4 = int8 on CPU).",
    )
    parser.add_argument(
        "--trust_remote_code", action="store_true", help="Allow the model's own code (off unless given)."
    )
    parser.add_argument(
        "-o", "--output_path", required=True, help="Output folder; the model goes into OUTPUT/model."
    )
    parser.add_argument(
        "--cache_dir",
        default=".olivepress-cache",
        help="Cache of finished passes (default .olivepress-cache).",
    )
    parser.add_argument(
        "--skip_check",
        action="store_true",
        help="Do not compare the result with PyTorch before handing it over.",
    )
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from olivepress.api import auto_opt

    auto_opt(
        args.model_name_or_path,
        output_path=args.output_path,
        adapter_path=args.adapter_path,
        adapter_name=args.adapter_name,
        adapter_precision=args.adapter_precision,
        adapter_block_size=args.adapter_block_size,
        device=args.device,
        provider=args.provider,
        precision=args.precision,
        use_ort_genai=args.use_ort_genai,
        int4_block_size=args.int4_block_size,
        int4_accuracy_level=args.int4_accuracy_level,
        trust_remote_code=args.trust_remote_code,
        cache_dir=args.cache_dir,
        skip_check=args.skip_check,
        log_level=0 if args.debug else args.log_level,
    )
    return 0

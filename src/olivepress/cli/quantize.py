"""`olivepress quantize`: AWQ, GPTQ or RTN on a CPU, into a standard AutoAWQ / GPTQ checkpoint."""

from __future__ import annotations

import argparse

HELP = "Quantize a model's weights (AWQ, GPTQ or RTN; runs on a CPU) into an AutoAWQ / GPTQ checkpoint."


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags
    from olivepress.cli.data_flags import add_data_flags

    parser = commands.add_parser("quantize", help=HELP, description=HELP)
    parser.add_argument(
        "-m",
        "--model_name_or_path",
        default="default",
        help="HF folder, .gguf file, HF id in the local cache, or 'default' (embedded SmolLM2).",
    )
    parser.add_argument("--algorithm", default="awq", help="awq (default), gptq or rtn.")
    parser.add_argument("--precision", default="int4", help="int4 (default) or int8.")
    parser.add_argument(
        "--group_size",
        type=int,
        default=128,
        help="Input columns per scale: 32, 64, 128 (default) or -1 per channel.",
    )
    parser.add_argument("--sym", action="store_true", help="Symmetric grid without zero points.")
    parser.add_argument(
        "--num_calib_samples", type=int, help="Calibration samples (default: the algorithm's)."
    )
    parser.add_argument("--calib_seq_len", type=int, help="Tokens per calibration sample.")
    parser.add_argument("--seed", type=int, default=0, help="Seed for calibration sampling (default 0).")
    parser.add_argument("--include_lm_head", action="store_true", help="Quantize lm_head too.")
    parser.add_argument(
        "--modules_to_not_convert", help="Comma-separated Linear layers (names or parts) to leave in float."
    )
    parser.add_argument(
        "--trust_remote_code", action="store_true", help="Allow the model's own code (off unless given)."
    )
    parser.add_argument(
        "-o", "--output_path", required=True, help="Output folder; the checkpoint goes into OUTPUT/model."
    )
    parser.add_argument(
        "--cache_dir",
        default=".olivepress-cache",
        help="Cache of finished passes (default .olivepress-cache).",
    )
    parser.add_argument("--clean_cache", action="store_true", help="Empty the cache before running.")
    add_data_flags(parser, "calibration data (default: text olivepress ships)")
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from olivepress.api import quantize
    from olivepress.cli.data_flags import data_config_from_args, split_commas

    quantize(
        args.model_name_or_path,
        output_path=args.output_path,
        algorithm=args.algorithm,
        precision=args.precision,
        group_size=args.group_size,
        sym=args.sym,
        num_calib_samples=args.num_calib_samples,
        calib_seq_len=args.calib_seq_len,
        seed=args.seed,
        include_lm_head=args.include_lm_head,
        modules_to_not_convert=split_commas(args.modules_to_not_convert),
        calibration_data=data_config_from_args(args, name="calibration"),
        trust_remote_code=args.trust_remote_code,
        cache_dir=args.cache_dir,
        clean_cache=args.clean_cache,
        log_level=0 if args.debug else args.log_level,
    )
    return 0

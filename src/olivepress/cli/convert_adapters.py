"""`olivepress convert-adapters`: a PEFT LoRA adapter into an .onnx_adapter for an auto-opt model."""

from __future__ import annotations

import argparse

HELP = "Convert a PEFT LoRA adapter into an .onnx_adapter file that an auto-opt model can load beside others."


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags
    from olivepress.runtime.adapter_precision import PRECISIONS

    parser = commands.add_parser("convert-adapters", help=HELP, description=HELP)
    parser.add_argument(
        "--adapter_path", required=True, help="PEFT LoRA adapter folder (trained on the same base)."
    )
    parser.add_argument(
        "-m", "--model", required=True, help="The auto-opt output (or its model/ folder) the adapter is for."
    )
    parser.add_argument("-o", "--output_path", required=True, help="The .onnx_adapter file to write.")
    parser.add_argument(
        "--name", help="Also register the adapter under this name in the model's adapters.json."
    )
    parser.add_argument(
        "--adapter_precision",
        choices=PRECISIONS,
        help="How the file stores the LoRA matrices; default and only choice: the precision the "
        "model was built for (auto-opt --adapter_precision).",
    )
    parser.add_argument(
        "--quantize_int4", action="store_true", help="Olive's spelling of --adapter_precision int4."
    )
    parser.add_argument(
        "--int4_quantization_mode",
        choices=["symmetric", "asymmetric"],
        default="symmetric",
        help="int8/int4: a zero point at the grid's middle, or from each block's range.",
    )
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from olivepress.api import convert_adapters
    from olivepress.errors import OlivepressError
    from olivepress.ui import console

    if args.quantize_int4 and args.adapter_precision not in (None, "int4"):
        raise OlivepressError(
            f"--quantize_int4 asks for int4 and --adapter_precision for {args.adapter_precision}; "
            "give one of them"
        )
    precision = "int4" if args.quantize_int4 else args.adapter_precision
    output = convert_adapters(
        args.adapter_path,
        args.model,
        args.output_path,
        name=args.name,
        adapter_precision=precision,
        symmetric=args.int4_quantization_mode == "symmetric",
    )
    console.print(f"Wrote {output}")
    return 0

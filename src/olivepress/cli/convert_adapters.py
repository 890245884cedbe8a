"""`olivepress convert-adapters`: a PEFT LoRA adapter into an .onnx_adapter for an auto-opt model."""

from __future__ import annotations

import argparse

HELP = "Convert a PEFT LoRA adapter into an .onnx_adapter file that an auto-opt model can load beside others."


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags

    parser = commands.add_parser("convert-adapters", help=HELP, description=HELP)
    parser.add_argument("--adapter_path", required=True, help="PEFT LoRA adapter folder (trained on the same base).")
    parser.add_argument("-m", "--model", required=True, help="The auto-opt output (or its model/ folder) the adapter is for.")
    parser.add_argument("-o", "--output_path", required=True, help="The .onnx_adapter file to write.")
    parser.add_argument("--name", help="Also register the adapter under this name in the model's adapters.json.")
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from olivepress.api import convert_adapters
    from olivepress.ui import console

    output = convert_adapters(args.adapter_path, args.model, args.output_path, name=args.name)
    console.print(f"Wrote {output}")
    return 0

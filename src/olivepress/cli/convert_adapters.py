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
    from pathlib import Path

    from olivepress.errors import OlivepressError
    from olivepress.paths import atomic_file
    from olivepress.runtime.adapters import convert_peft_adapter, register_adapter
    from olivepress.runtime.generate import GenAIModel, genai_folder
    from olivepress.ui import console

    output = Path(args.output_path)
    if output.suffix != ".onnx_adapter":
        raise OlivepressError(f"output path {output} should end in .onnx_adapter")
    adapter_dir = Path(args.adapter_path)
    if not adapter_dir.exists():
        raise OlivepressError(f"adapter path {adapter_dir} does not exist; pass a PEFT adapter folder")
    model_dir = genai_folder(args.model)
    with atomic_file(output) as tmp:
        convert_peft_adapter(adapter_dir, model_dir, tmp)
        # Loading it into the model is the proof it fits; a file that does not load is not handed over.
        GenAIModel(model_dir, adapters={"candidate": tmp})
    if args.name:
        register_adapter(model_dir, args.name, str(output.resolve()))
    console.print(f"Wrote {output}")
    return 0

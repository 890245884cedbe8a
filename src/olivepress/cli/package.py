"""`olivepress package`: an output folder as one versioned, self-describing archive."""

from __future__ import annotations

import argparse

HELP = (
    "Pack an output folder into a versioned archive with a manifest (model, adapters, metrics, file hashes)."
)

EPILOG = """\
The archive is what serve and generate take directly (-m ft-for-travel-1.olivepress.tar), and
what register uploads. A name ending in .gz is gzip-compressed.

  olivepress package models/phi/onnx-ao --name ft-for-travel --version 1
"""


def add_parser(commands) -> None:
    from olivepress.cli.common import add_adapter_flag, add_logging_flags

    parser = commands.add_parser("package", help=HELP, description=HELP, epilog=EPILOG)
    parser.add_argument("path", help="The output folder (what auto-opt or run wrote).")
    parser.add_argument(
        "-o",
        "--output_path",
        help="Archive to write (default: NAME-VERSION.olivepress.tar beside the folder).",
    )
    parser.add_argument("--name", help="Model name in the manifest (default: the folder's name).")
    parser.add_argument("--version", default="1", help="Version in the manifest (default 1).")
    add_adapter_flag(
        parser,
        ("Pack an extra .onnx_adapter under NAME (repeatable); the model's own adapters are always packed."),
    )
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from olivepress.api import package
    from olivepress.cli.generate import parse_adapters
    from olivepress.share.package import read_manifest
    from olivepress.ui import console, setup_logging

    setup_logging(0 if args.debug else args.log_level)
    archive = package(
        args.path,
        args.output_path,
        name=args.name,
        version=args.version,
        adapters=parse_adapters(args.adapter),
    )
    manifest = read_manifest(archive)
    model = manifest["model"]
    adapters = ", ".join(manifest["adapters"]) or "none"
    console.print(
        f"Wrote {archive}: {manifest['name']} {manifest['version']}, {model['kind']} "
        f"{model['precision'] or ''}, adapters: {adapters}, {len(manifest['files'])} files"
    )
    return 0

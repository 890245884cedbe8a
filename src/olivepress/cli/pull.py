"""`olivepress pull`: a registered model back into a folder."""

from __future__ import annotations

import argparse

HELP = "Download a registered model (models:/NAME/VERSION) into a folder, checked against its manifest."


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags

    parser = commands.add_parser("pull", help=HELP, description=HELP)
    parser.add_argument("model", help="models:/NAME/VERSION (VERSION may be 'latest').")
    parser.add_argument("-o", "--output_path", required=True, help="Folder to unpack into (new or empty).")
    parser.add_argument(
        "--registry_uri",
        help="MLflow tracking/registry URI (default: env OLIVEPRESS_REGISTRY_URI, else the local registry).",
    )
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from olivepress.api import pull
    from olivepress.ui import console, setup_logging

    setup_logging(0 if args.debug else args.log_level)
    folder = pull(args.model, args.output_path, registry_uri=args.registry_uri)
    console.print(f"Pulled {args.model} into {folder}")
    return 0

"""`olivepress register`: a model into an MLflow Model Registry (local by default)."""

from __future__ import annotations

import argparse

HELP = (
    "Register an output folder or package archive in an MLflow Model Registry (local SQLite one by default)."
)

EPILOG = """\
The seed's flags work as written; the local registry needs no server and lives in the
olivepress data folder. --registry_uri names any MLflow tracking server instead.

  olivepress register --name ft-for-travel --version 1 --path ./models/phi/onnx-ao
  olivepress pull models:/ft-for-travel/1 -o ./ft-for-travel
"""


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags

    parser = commands.add_parser("register", help=HELP, description=HELP, epilog=EPILOG)
    parser.add_argument("--name", required=True, help="Registered model name.")
    parser.add_argument("--version", help="Version to create; must be the next one (default: the next one).")
    parser.add_argument("--path", required=True, help="Output folder or package archive.")
    parser.add_argument("--description", help="Version description (default: a summary of the manifest).")
    parser.add_argument(
        "--registry_uri",
        help="MLflow tracking/registry URI (default: env OLIVEPRESS_REGISTRY_URI, else the local registry).",
    )
    # The seed's Azure flags name a workspace; they are accepted so its command runs, and say so.
    parser.add_argument("--resource_group", help=argparse.SUPPRESS)
    parser.add_argument("--workspace_name", help=argparse.SUPPRESS)
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    import logging

    from olivepress.api import register
    from olivepress.ui import console, setup_logging

    setup_logging(0 if args.debug else args.log_level)
    if args.resource_group or args.workspace_name:
        logging.getLogger("olivepress").warning(
            "--resource_group/--workspace_name name an Azure ML workspace; olivepress registers in MLflow "
            "(use --registry_uri for a shared server)"
        )
    found = register(
        args.path, args.name, args.version, registry_uri=args.registry_uri, description=args.description
    )
    console.print(f"Registered {found.uri} in {found.registry_uri}")
    return 0

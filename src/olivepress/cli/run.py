"""`olivepress run --config workflow.json`: run a workflow config."""

from __future__ import annotations

import argparse

HELP = "Run a workflow config (JSON or YAML): passes in order, cached, output in output_dir."


def add_parser(commands) -> None:
    parser = commands.add_parser("run", help=HELP, description=HELP)
    parser.add_argument("--config", required=True, help="Workflow config file (.json, .yaml or .yml).")
    parser.add_argument(
        "-o", "--output_path", help="Write the output here instead of the config's output_dir."
    )
    parser.add_argument(
        "--clean_cache", action="store_true", help="Empty the workflow's cache before running."
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="Run the search's candidates as tasks on this Ray cluster (ray://HOST:10001, HOST:6379, auto, "
        "local); the same as a Ray system as the config's host. Needs olivepress[ray].",
    )
    parser.add_argument(
        "--allow_user_code",
        action="store_true",
        help="Run Python the config names (user_script, custom metrics, data loaders); off unless given.",
    )
    from olivepress.cli.common import add_logging_flags

    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from pathlib import Path

    from olivepress.api import run
    from olivepress.workflow.load import read_config_file

    raw = read_config_file(Path(args.config))
    if args.ray:
        from olivepress.workflow.normalize import use_ray_host

        raw = use_ray_host(raw, args.ray)
    overrides = {"output_dir": args.output_path} if args.output_path else {}
    run(
        raw,
        clean_cache=args.clean_cache,
        log_level=0 if args.debug else args.log_level,
        overrides=overrides,
        allow_user_code=args.allow_user_code,
    )
    return 0

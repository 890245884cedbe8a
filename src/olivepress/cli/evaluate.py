"""`olivepress evaluate --config workflow.json`: measure the config's input model with its
evaluator, without running any pass."""

from __future__ import annotations

import argparse

HELP = "Evaluate a workflow's input model with the workflow's evaluator (no passes run)."


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags

    parser = commands.add_parser("evaluate", help=HELP, description=HELP)
    parser.add_argument(
        "--config", required=True, help="Workflow config file (.json, .yaml or .yml) with an evaluator."
    )
    parser.add_argument(
        "-o", "--output_path", help="JSON file for the results (default: <output_dir>/metrics.json)."
    )
    parser.add_argument(
        "--allow_user_code",
        action="store_true",
        help="Run Python the config names (custom metrics, data loaders); off unless given.",
    )
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from olivepress.api import evaluate

    evaluation = evaluate(
        args.config,
        output_path=args.output_path,
        allow_user_code=args.allow_user_code,
        log_level=0 if args.debug else args.log_level,
    )
    return 0 if evaluation.goals_met else 1

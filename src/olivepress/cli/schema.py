"""`olivepress schema`: the JSON Schema of workflow configs, for editors."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Print the JSON Schema of workflow configs (point your editor's JSON/YAML validation at it)."


def add_parser(commands) -> None:
    parser = commands.add_parser("schema", help=HELP, description=HELP)
    parser.add_argument(
        "-o", "--output_path", help="Write the schema to this file instead of standard output."
    )
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from pathlib import Path

    from olivepress.workflow.schema import workflow_json_schema

    text = json.dumps(workflow_json_schema(), indent=2)
    if args.output_path:
        Path(args.output_path).write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return 0

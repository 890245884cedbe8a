"""The `olivepress` command."""

from __future__ import annotations

import sys
import traceback

from olivepress import __version__
from olivepress.cli import (
    auto_opt,
    benchmark,
    chat,
    convert_adapters,
    evaluate,
    finetune,
    generate,
    package,
    pull,
    quantize,
    register,
    run,
    schema,
    serve,
)
from olivepress.cli.common import ArgumentParser, normalize_argv, wants_traceback
from olivepress.errors import OlivepressError

COMMANDS = (
    run,
    evaluate,
    benchmark,
    quantize,
    finetune,
    auto_opt,
    convert_adapters,
    generate,
    chat,
    serve,
    package,
    register,
    pull,
    schema,
)

DESCRIPTION = """\
Make Hugging Face / PyTorch / GGUF models small, fast and task-tuned for ONNX Runtime and
ONNX Runtime GenAI. Every flag accepts the snake_case spelling (--output_path) and the
kebab-case one (--output-path)."""


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="olivepress", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"olivepress {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ArgumentParser.argv = normalize_argv(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(ArgumentParser.argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.execute(args) or 0)
    except OlivepressError as exc:
        if wants_traceback(args):
            traceback.print_exc()
        sys.stderr.write(f"olivepress {args.command}: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(
            f"olivepress {args.command}: interrupted; finished passes stay cached, a re-run resumes\n"
        )
        return 130
    except Exception as exc:  # an olivepress bug or an unexpected library failure
        if wants_traceback(args):
            traceback.print_exc()
        sys.stderr.write(
            f"olivepress {args.command}: unexpected error: {type(exc).__name__}: {exc} "
            "(run again with --log_level 0 for the traceback, and please report it)\n"
        )
        return 1

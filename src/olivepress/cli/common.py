"""What every command shares: flag spelling, one-line errors, logging flags."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from olivepress.errors import did_you_mean


def normalize_argv(argv: list[str]) -> list[str]:
    """Accept kebab-case flags (--output-path) as well as the seed's snake_case (--output_path)."""
    normalized = []
    for token in argv:
        if token == "--":
            normalized.extend(argv[len(normalized) :])
            break
        if token.startswith("--") and len(token) > 2:
            name, sep, value = token[2:].partition("=")
            token = "--" + name.replace("-", "_") + sep + value
        normalized.append(token)
    return normalized


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line that says what to do, without the usage dump."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    argv: list[str] = []  # set by main(): lets error() find a misspelt flag behind another complaint

    def error(self, message: str) -> NoReturn:
        known = [opt for action in self._actions for opt in action.option_strings]
        if message.startswith("unrecognized arguments:"):
            flags = [t for t in message.split(":", 1)[1].split() if t.startswith("-")]
        else:
            # A misspelt flag is the real mistake when argparse complains of a missing one.
            flags = [
                t.split("=")[0]
                for t in ArgumentParser.argv
                if t.startswith("--") and t.split("=")[0] not in known
            ]
            if flags:
                message = f"unrecognized arguments: {' '.join(flags)}"
        if flags:
            message += did_you_mean(flags[0], known)
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def add_adapter_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """The repeatable `--adapter NAME=FILE` (an .onnx_adapter under a name) of generate, chat,
    serve and package; `help` says what the command does with it."""
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=FILE", help=help)


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--log_level",
        type=int,
        default=1,
        choices=range(5),
        metavar="{0..4}",
        help="0 debug (with tracebacks), 1 info (default), 2 warning, 3 error, 4 critical.",
    )
    group.add_argument(
        "--debug", action="store_true", help="Show debug output and full tracebacks (same as --log_level 0)."
    )


def wants_traceback(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or getattr(args, "log_level", 1) == 0

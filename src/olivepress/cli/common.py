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
            normalized.extend(argv[len(normalized):])
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

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            flags = [t for t in message.split(":", 1)[1].split() if t.startswith("-")]
            known = [opt for action in self._actions for opt in action.option_strings]
            hints = "".join(did_you_mean(flag, known) for flag in flags[:1])
            message = f"{message}{hints}"
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--log_level", type=int, default=1, choices=range(5), metavar="{0..4}",
        help="0 debug (with tracebacks), 1 info (default), 2 warning, 3 error, 4 critical.",
    )
    group.add_argument("--debug", action="store_true", help="Show debug output and full tracebacks (same as --log_level 0).")


def wants_traceback(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or getattr(args, "log_level", 1) == 0

"""The one error type for expected failures.

Every failure a user can cause (a bad flag, config key, data file or model) raises
`OlivepressError` with a message that says what is wrong and what to do. The CLI prints
that message on one line and exits non-zero, without a traceback.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class OlivepressError(Exception):
    """An expected failure; its message is written for the person running olivepress."""


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `name` (case-insensitive), or None when nothing is close."""
    by_lower = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean X?)' when a candidate is close to `name`, else ''."""
    match = closest(name, candidates)
    return f" (did you mean '{match}'?)" if match else ""


_ANSI_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of a library's exception, without terminal colours: for a one-line error."""
    text = _ANSI_COLOURS.sub("", str(exc)).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return (line[:limit] + "...") if len(line) > limit else line

"""Records → training texts: a `{field}` template, one field, joined columns, or a chat template.

Templates are filled by our own substitution rather than `str.format`: the seed's templates
name fields with spaces (`{Best Answer}`), and prompts often carry braces of their own (JSON,
code) that `str.format` would choke on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from olivepress.data.config import PreProcessDataConfig
from olivepress.errors import OlivepressError, did_you_mean

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_TEXT_FIELD = "text"

# `{{` and `}}` are literal braces, as in str.format; `{name}` is a placeholder when `name`
# looks like a field name (letters, digits, spaces, `_ . -`). Anything else in braces
# (`{"a": 1}`, `{% if %}`) is left exactly as written.
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][\w .\-]*)\}")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape_cli_template(template: str) -> str:
    r"""Turn the two-character escapes a shell passes through (`\n`, `\t`, `\r`, `\\`) into
    the characters they stand for; any other backslash is kept as typed."""
    return re.sub(r"\\([nrt\\])", lambda m: _ESCAPES[m.group(1)], template)


def template_fields(template: str) -> list[str]:
    """The field names a template refers to, in order, without repeats."""
    names = [m.group(1).strip() for m in _TOKEN.finditer(template) if m.group(1)]
    return list(dict.fromkeys(names))


def fill_template(template: str, record: Mapping[str, Any]) -> str:
    """`template` with each `{field}` replaced by the record's value (see module notes)."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1).strip()
        if name not in record:
            fields = list(record)
            raise OlivepressError(
                f"the text template uses field '{name}', which the record does not have"
                f"{did_you_mean(name, fields)}; its fields are {_listing(fields)}"
            )
        return _as_text(record[name])

    return _TOKEN.sub(replace, template)


def render_texts(
    records: Iterable[Mapping[str, Any]],
    pre: PreProcessDataConfig,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> list[str]:
    """One text per record, chosen by `pre`.

    Precedence: `use_chat_template`, else `text_template`, else `text_field`, else `text_cols`
    joined with newlines, else a `text` field in the data.
    """
    rows = _rows(records)
    fields = _field_names(rows)
    _check_one_source(pre)
    if pre.use_chat_template:
        return _render_chat(rows, fields, tokenizer)

    text_cols = [pre.text_cols] if isinstance(pre.text_cols, str) else list(pre.text_cols or [])
    if pre.text_template is not None:
        used = template_fields(pre.text_template)
        _require_fields(used, fields, what="the text template")
        # text_cols beside a template (the seed's form) lists the fields it uses: check them too.
        _require_fields(text_cols, fields, what="text_cols")
        _require_values(rows, used)
        return [fill_template(pre.text_template, row) for row in rows]
    if pre.text_field is not None:
        columns = [pre.text_field]
    elif text_cols:
        columns = text_cols
    elif DEFAULT_TEXT_FIELD in fields:
        columns = [DEFAULT_TEXT_FIELD]
    else:
        raise OlivepressError(
            f"no way to turn records into text: the data has fields {_listing(fields)} but no 'text' field; "
            'give a text template (--text_template "{prompt} {response}" or text_template in the config), '
            "a text field (--text_field / text_field), or use_chat_template for a 'messages' field"
        )
    _require_fields(columns, fields, what="text_field" if pre.text_field else "text_cols")
    _require_values(rows, columns)
    return ["\n".join(_as_text(row[c]) for c in columns) for row in rows]


def _rows(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    to_list = getattr(records, "to_list", None)  # a datasets.Dataset: one Arrow → Python pass
    rows = to_list() if callable(to_list) else list(records)
    if not rows:
        raise OlivepressError(
            "there are no records to turn into text; give a data set with at least one record"
        )
    return rows


def _field_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(name for row in rows for name in row))


def _check_one_source(pre: PreProcessDataConfig) -> None:
    given = [
        name
        for name, value in (
            ("use_chat_template", pre.use_chat_template),
            ("text_template", pre.text_template is not None),
            ("text_field", pre.text_field is not None),
        )
        if value
    ]
    if len(given) > 1:
        raise OlivepressError(
            f"{' and '.join(given)} are set together, so it is unclear which text to use; keep one of them"
        )


def _require_fields(needed: Sequence[str], fields: Sequence[str], what: str) -> None:
    for name in needed:
        if name not in fields:
            raise OlivepressError(
                f"{what} uses field '{name}', which the data does not have{did_you_mean(name, fields)}; "
                f"its fields are {_listing(fields)}"
            )


def _require_values(rows: Sequence[Mapping[str, Any]], needed: Sequence[str]) -> None:
    # An absent or null value would silently train on an empty answer; better to say where.
    for index, row in enumerate(rows):
        for name in needed:
            if row.get(name) is None:
                raise OlivepressError(
                    f"record {index + 1} has no value for field '{name}'; fill it in or remove that record"
                )


def _render_chat(
    rows: Sequence[Mapping[str, Any]], fields: Sequence[str], tokenizer: PreTrainedTokenizerBase | None
) -> list[str]:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise OlivepressError(
            "use_chat_template is set but the model's tokenizer has no chat template; "
            "use a text template instead (--text_template)"
        )
    if "messages" in fields:
        _require_values(rows, ["messages"])
        conversations = [list(row["messages"]) for row in rows]
    elif "prompt" in fields and "response" in fields:
        # The common single-turn shape (and the seed's travel data): one user turn, one answer.
        _require_values(rows, ["prompt", "response"])
        conversations = [
            [
                {"role": "user", "content": _as_text(row["prompt"])},
                {"role": "assistant", "content": _as_text(row["response"])},
            ]
            for row in rows
        ]
    else:
        raise OlivepressError(
            f"use_chat_template needs a 'messages' field (a list of {{role, content}}) or 'prompt' and "
            f"'response' fields; the data has {_listing(fields)}"
        )
    return [tokenizer.apply_chat_template(conv, tokenize=False) for conv in conversations]


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _listing(fields: Sequence[str]) -> str:
    shown = ", ".join(f"'{f}'" for f in fields[:12])
    return (shown + f" and {len(fields) - 12} more") if len(fields) > 12 else (shown or "none")

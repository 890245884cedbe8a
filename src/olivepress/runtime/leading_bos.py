"""Whether a model's tokenizer starts every text with its BOS token, read from the tokenizer files.

ORT GenAI's tokenizer encodes without special tokens (its `add_special_tokens` option is off),
so a model trained with a leading BOS (Gemma, Llama-3) gets none from it, and a Gemma model
without its BOS produces garbage. Transformers decides from `add_bos_token` in
tokenizer_config.json where it is written, else from tokenizer.json's post-processor
(transformers 5 no longer writes `add_bos_token`); this reads the same two places.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _template_starts_with(processor: Any, token: str) -> bool:
    """A TemplateProcessing (possibly inside a Sequence of processors) whose single-text template
    begins with `token`."""
    if not isinstance(processor, dict):
        return False
    if processor.get("type") == "Sequence":
        return any(_template_starts_with(p, token) for p in processor.get("processors") or [])
    single = processor.get("single")
    if processor.get("type") != "TemplateProcessing" or not single:
        return False
    first = single[0].get("SpecialToken") if isinstance(single[0], dict) else None
    return isinstance(first, dict) and first.get("id") == token


def leading_bos(folder: Path) -> str | None:
    """The BOS token text that the tokenizer in `folder` puts before every text, or None."""
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    bos = _token_text(config.get("bos_token"))
    if bos is None:
        return None
    if isinstance(config.get("add_bos_token"), bool):
        return bos if config["add_bos_token"] else None
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        return None
    processor = json.loads(tokenizer_file.read_text()).get("post_processor")
    return bos if _template_starts_with(processor, bos) else None

"""The CLI's data flags (`--data_files`, `--data_name`, `--text_template`, ...) → a DataConfig."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from olivepress.data.config import DataConfig, LoadDatasetConfig, PreProcessDataConfig
from olivepress.data.templates import unescape_cli_template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def data_config_from_flags(
    data_files: str | list[str],
    data_name: str = "json",
    split: str = "train",
    text_template: str | None = None,
    text_field: str | None = None,
    text_cols: str | list[str] | None = None,
    use_chat_template: bool = False,
    max_seq_len: int | None = None,
    max_samples: int | None = None,
    name: str = "train",
    corpus_strategy: Literal["join", "line-by-line"] = "join",
) -> DataConfig:
    """A DataConfig equal to what the same settings in a workflow config would give.

    `data_files` is one file (or glob) or a list of them; `text_cols` one field or a list (the
    CLI splits its comma-separated flags). The template is unescaped because a shell passes
    `"\\n"` through as backslash + n. Whether the records can become text at all is checked
    when they are rendered (see `preview_texts`).
    """
    pre: dict[str, object] = {"use_chat_template": use_chat_template, "corpus_strategy": corpus_strategy}
    if text_template is not None:
        pre["text_template"] = unescape_cli_template(text_template)
    if text_field is not None:
        pre["text_field"] = text_field
    if text_cols is not None:
        pre["text_cols"] = _as_list(text_cols)
    if max_seq_len is not None:
        pre["source_max_len"] = max_seq_len
    if max_samples is not None:
        pre["max_samples"] = max_samples
    files = _as_list(data_files)
    return DataConfig(
        name=name,
        load_dataset_config=LoadDatasetConfig(
            data_name=data_name, data_files=files[0] if len(files) == 1 else files, split=split
        ),
        pre_process_data_config=PreProcessDataConfig(**pre),
    )


def preview_texts(
    config: DataConfig, tokenizer: PreTrainedTokenizerBase | None = None, count: int = 3
) -> list[str]:
    """The first `count` training texts: lets a command fail on a bad template or file in
    seconds, before it loads a model, and shows the user what the model will be trained on."""
    from olivepress.data.loading import load_records
    from olivepress.data.templates import render_texts

    records = load_records(config)
    return render_texts(
        records.select(range(min(count, len(records)))), config.pre_process_data_config, tokenizer
    )


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)

"""Data configs, as in the seed workflow configs (flat form; the nested `params` form is
flattened by workflow/normalize.py before it gets here)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from olivepress.errors import OlivepressError

WIKITEXT_NAMES = ("wikitext", "wikitext-2-raw-v1", "wikitext2")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoadDatasetConfig(_Strict):
    """Which local files to read, through the `datasets` library."""

    data_name: str = Field("json", description="Loader: json (also JSON lines), csv, parquet or text.")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None,
        description=(
            "A local file, a list of files, or a split name -> files mapping (required but for wikitext)."
        ),
    )
    split: str = Field("train", description="Which split of the loaded files to use.")
    subset: str | None = Field(
        None, description="A hub data set's configuration (Olive's name); read with wikitext only."
    )
    col_filters: dict[str, str | int | float] | None = Field(
        None, description="Keep only the records whose columns hold these values: {column: value}."
    )

    @property
    def names_wikitext(self) -> bool:
        """A hub wikitext data set (Olive's recipes calibrate on it).

        olivepress uses its shipped prose instead.
        """
        return self.data_files is None and self.data_name.lower().rsplit("/", 1)[-1] in WIKITEXT_NAMES

    @field_validator("data_files", mode="before")
    @classmethod
    def _local_files_only(cls, value: Any) -> Any:
        # The seed's cloud form ({"type": "azureml_datastore", "config": {...}}) would otherwise
        # fail as an unreadable type error; say plainly what to do instead. OlivepressError is
        # not a ValueError, so pydantic lets it through unwrapped.
        if isinstance(value, dict) and ("type" in value or "config" in value):
            kind = value.get("type", "cloud")
            raise OlivepressError(
                f"data_files names a cloud data source (type '{kind}'); olivepress reads local files only: "
                'download the data and give its path, e.g. "data_files": "data/train.jsonl"'
            )
        return value


class PreProcessDataConfig(_Strict):
    """How records become token sequences."""

    dataset_type: Literal["corpus"] = "corpus"
    text_cols: list[str] | str | None = Field(None, description="Fields the template uses.")
    text_template: str | None = Field(None, description="Python-style template, e.g. '{prompt} {response}'.")
    text_field: str | None = Field(None, description="Use this one field as the text (no template).")
    use_chat_template: bool = Field(
        False, description="Render a `messages` field with the tokenizer's chat template."
    )
    corpus_strategy: Literal["join", "line-by-line"] = Field(
        "join",
        description=(
            "join: concatenate samples and cut into source_max_len chunks; line-by-line: one sample each."
        ),
    )
    source_max_len: int = Field(1024, gt=0, description="Tokens per sequence.")
    pad_to_max_len: bool = False
    use_attention_mask: bool = True
    max_samples: int | None = Field(None, gt=0, description="Use at most this many records.")


class DataConfig(_Strict):
    name: str
    type: Literal["HuggingfaceContainer"] = "HuggingfaceContainer"
    load_dataset_config: LoadDatasetConfig
    pre_process_data_config: PreProcessDataConfig = Field(default_factory=PreProcessDataConfig)

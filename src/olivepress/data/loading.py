"""Local data files → a `datasets.Dataset`, with errors a person can act on.

Only the `datasets` library's packaged local loaders are used: a machine running olivepress
may have no network, and a hub data set would be fetched behind the user's back.
"""

from __future__ import annotations

import contextlib
import glob
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olivepress.data.config import DataConfig, LoadDatasetConfig
from olivepress.errors import OlivepressError, did_you_mean
from olivepress.paths import olivepress_home

if TYPE_CHECKING:
    import datasets

LOCAL_LOADERS = ("json", "csv", "parquet", "text")
# Spellings people reach for that mean one of the loaders above.
_LOADER_ALIASES = {"jsonl": "json", "jsonlines": "json", "txt": "text"}
_GLOB_CHARS = set("*?[")


def datasets_cache_dir() -> Path:
    # Our own folder rather than ~/.cache/huggingface/datasets: the Arrow copies of a user's
    # files are ours to make and to delete, and must not mix with their other projects.
    return olivepress_home() / "datasets"


def require_local_files(config: DataConfig) -> None:
    """Refuse a data config that names a hub data set and no local files: olivepress reads files."""
    load = config.load_dataset_config
    if load.data_files is None:
        raise OlivepressError(
            f"data config '{config.name}' names the hub data set '{load.data_name}' and no data_files, and "
            f"olivepress reads only local files: save it once while online (datasets.load_dataset("
            f"'{load.data_name}', split='train').to_json('data.jsonl')) and set its load_dataset_config."
            "data_files to that file (only wikitext, for calibration, falls back to shipped text)"
        )


def load_records(config: DataConfig) -> datasets.Dataset:
    """The records `config` names, read from local files (at most `max_samples` of them)."""
    require_local_files(config)
    load = config.load_dataset_config
    loader = _loader_name(load.data_name)
    data_files = _resolve_data_files(load)
    dataset = _load(loader, data_files, load.split)

    source = _describe(data_files)
    if len(dataset) == 0:
        raise OlivepressError(
            f"the data set from {source} has no records; give a file with at least one record"
        )
    if load.col_filters:
        dataset = _filtered(dataset, load.col_filters, config.name)
    max_samples = config.pre_process_data_config.max_samples
    if max_samples is not None and max_samples < len(dataset):
        # The first records, not a random pick: the same config must give the same data.
        dataset = dataset.select(range(max_samples))
    return dataset


def _filtered(dataset: datasets.Dataset, col_filters: dict[str, Any], name: str) -> datasets.Dataset:
    """The records whose columns equal every value in `col_filters` (Olive's col_filters)."""
    columns = dataset.column_names
    unknown = [column for column in col_filters if column not in columns]
    if unknown:
        raise OlivepressError(
            f"data config '{name}': col_filters names column '{unknown[0]}', which the records do not "
            f"have{did_you_mean(unknown[0], columns)} (columns: {', '.join(columns)})"
        )
    with _quiet_datasets():
        kept = dataset.filter(lambda record: all(record[c] == v for c, v in col_filters.items()))
    if len(kept) == 0:
        raise OlivepressError(
            f"data config '{name}': no record matches col_filters {col_filters}; check the values"
        )
    return kept


def _loader_name(data_name: str) -> str:
    name = _LOADER_ALIASES.get(data_name.lower(), data_name.lower())
    if name in LOCAL_LOADERS:
        return name
    loaders = ", ".join(LOCAL_LOADERS)
    raise OlivepressError(
        f"data_name '{data_name}' is not a local loader{did_you_mean(data_name, LOCAL_LOADERS)}: "
        f"a hub data set cannot be fetched here; download its files and use one of {loaders} "
        "with data_files pointing at them"
    )


def _resolve_data_files(load: LoadDatasetConfig) -> str | list[str] | dict[str, list[str]]:
    """Absolute paths (relative ones are taken from the current directory), checked to exist."""
    files = load.data_files
    if isinstance(files, dict):
        if not files:
            raise OlivepressError("data_files is an empty mapping; give {split: file} pairs or a file path")
        return {split: [_resolve_one(f) for f in _as_list(paths)] for split, paths in files.items()}
    resolved = [_resolve_one(f) for f in _as_list(files)]
    if not resolved:
        raise OlivepressError("data_files is empty; give the path of a data file")
    return resolved[0] if len(resolved) == 1 else resolved


def _as_list(paths: str | list[str]) -> list[str]:
    return [paths] if isinstance(paths, str) else list(paths)


def _resolve_one(path: str) -> str:
    full = Path(path).expanduser()
    if not full.is_absolute():
        full = Path.cwd() / full
    if _GLOB_CHARS & set(path):
        if not glob.glob(str(full), recursive=True):
            raise OlivepressError(f"no data file matches '{path}' (looked in {full.parent})")
        return str(full)
    if full.is_dir():
        raise OlivepressError(
            f"data file '{path}' is a folder; give the file(s) inside it, or a pattern like '{path}/*.jsonl'"
        )
    if not full.is_file():
        raise OlivepressError(f"data file '{path}' not found (looked for {full})")
    if full.stat().st_size == 0:
        raise OlivepressError(f"data file '{path}' is empty; give a file with at least one record")
    return str(full)


def _files_of(data_files: str | list[str] | dict[str, list[str]]) -> list[str]:
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, dict):
        return [f for paths in data_files.values() for f in paths]
    return list(data_files)


def _describe(data_files: str | list[str] | dict[str, list[str]]) -> str:
    files = _files_of(data_files)
    names = ", ".join(f"'{f}'" for f in files[:3])
    return names + (f" and {len(files) - 3} more" if len(files) > 3 else "")


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    # `datasets` logs its own error (and draws progress bars) before raising; we raise one
    # clear line instead, so silence it for the duration of the load.
    from datasets.utils import logging as ds_logging

    verbosity = ds_logging.get_verbosity()
    bars_were_on = ds_logging.is_progress_bar_enabled()
    ds_logging.set_verbosity(ds_logging.CRITICAL)
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        ds_logging.set_verbosity(verbosity)
        if bars_were_on:
            ds_logging.enable_progress_bar()


def _load(loader: str, data_files: str | list[str] | dict[str, list[str]], split: str) -> datasets.Dataset:
    import datasets

    cache_dir = datasets_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet_datasets():
            return datasets.load_dataset(loader, data_files=data_files, split=split, cache_dir=str(cache_dir))
    except OlivepressError:
        raise
    except ValueError as exc:
        message = str(exc).lower()
        if "corresponds to no data" in message:  # files with blank lines only
            raise OlivepressError(
                f"the data set from {_describe(data_files)} has no records; give a file with at least "
                "one record"
            ) from exc
        if "split" in message and exc.__cause__ is None:
            raise _split_error(split, data_files) from exc
        raise _read_error(loader, data_files, exc) from exc
    except (datasets.exceptions.DatasetsError, StopIteration, OSError) as exc:
        raise _read_error(loader, data_files, exc) from exc


def _split_error(split: str, data_files: str | list[str] | dict[str, list[str]]) -> OlivepressError:
    if isinstance(data_files, dict):
        known = ", ".join(data_files)
        return OlivepressError(
            f"split '{split}' is not in data_files (it has: {known}); set split to one of them"
        )
    return OlivepressError(
        f"split '{split}' does not exist: a plain file or list of files is the 'train' split; "
        "set split to 'train' (or a slice like 'train[:80%]'), or give data_files as {split: file}"
    )


def _read_error(
    loader: str, data_files: str | list[str] | dict[str, list[str]], exc: BaseException
) -> OlivepressError:
    """Name the file that would not read and, where we can tell, the line."""
    files = [f for f in _files_of(data_files) if not _GLOB_CHARS & set(f)]
    culprit = files[0] if len(files) == 1 else _first_unreadable(loader, files)
    kind = {"json": "JSON", "csv": "CSV", "parquet": "Parquet", "text": "text"}[loader]
    where = f"data file '{culprit}'" if culprit else f"the data files ({_describe(data_files)})"
    detail = _json_problem(culprit) if loader == "json" and culprit else None
    detail = detail or _root_message(exc)
    return OlivepressError(
        f"cannot read {where} as {kind}: {detail}; fix the file or set data_name to its format"
    )


def _first_unreadable(loader: str, files: list[str]) -> str | None:
    # Only on the error path: load the files one by one to find the one that fails.
    import datasets

    for path in files:
        try:
            with _quiet_datasets():
                datasets.load_dataset(
                    loader, data_files=path, split="train", cache_dir=str(datasets_cache_dir())
                )
        except Exception:
            return path
    return None


def _json_problem(path: str) -> str | None:
    """'line N: <what json says>' for the first line that is not valid JSON, else None.

    pyarrow's message counts rows inside a block, which is not a line a person can go to;
    Python's own parser finds the real line.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    try:
        json.loads(text)
        return None  # one valid JSON document: the problem is its shape, not its syntax
    except json.JSONDecodeError as whole:
        whole_error = whole
    if text.lstrip().startswith("["):
        return f"line {whole_error.lineno}: {whole_error.msg}"
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError as err:
            return f"line {number}: {err.msg}"
    return None


def _root_message(exc: BaseException) -> str:
    """The innermost library message, on one line (the outer ones say only 'an error occurred')."""
    messages = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = " ".join(str(current).split()).rstrip(".")
        if text:
            messages.append(text)
        current = current.__cause__ or current.__context__
    generic = ("an error occurred while generating the dataset",)
    useful = [m for m in messages if m.lower() not in generic]
    # The first cause below the generic wrapper is the library's own explanation.
    return useful[0] if useful else type(exc).__name__

"""Data configs → datasets: load, template, tokenize, split, calibration samples.

Heavy libraries (`datasets`, `torch`, `transformers`) are imported inside the functions that
need them, so importing this package (as every config does) stays fast.
"""

from olivepress.data.calibration import calibration_samples
from olivepress.data.config import DataConfig, LoadDatasetConfig, PreProcessDataConfig
from olivepress.data.flags import data_config_from_flags, preview_texts
from olivepress.data.loading import load_records
from olivepress.data.shipped import example_data_path, heldout_names, heldout_text, shipped_text
from olivepress.data.split import train_eval_split
from olivepress.data.templates import render_texts, unescape_cli_template
from olivepress.data.tokenize import tokenize_corpus, training_examples

__all__ = [
    "DataConfig",
    "LoadDatasetConfig",
    "PreProcessDataConfig",
    "calibration_samples",
    "data_config_from_flags",
    "example_data_path",
    "heldout_names",
    "heldout_text",
    "load_records",
    "preview_texts",
    "render_texts",
    "shipped_text",
    "tokenize_corpus",
    "train_eval_split",
    "training_examples",
    "unescape_cli_template",
]

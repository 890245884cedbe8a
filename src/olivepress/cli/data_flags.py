"""The data flags (--data_files, --data_name, --text_template, ...) of the commands that read data."""

from __future__ import annotations

import argparse


def add_data_flags(
    parser: argparse.ArgumentParser, purpose: str, *, required: bool = False
) -> argparse._ArgumentGroup:
    """One data config's flags in a group of their own; the group, for command-specific extras."""
    group = parser.add_argument_group("data", f"{purpose} (local files only)")
    group.add_argument(
        "--data_files",
        required=required,
        help="Local data file(s), comma-separated, or a glob (json/jsonl, csv, parquet or text).",
    )
    group.add_argument(
        "--data_name",
        default="json",
        help="Loader: json (also JSON lines), csv, parquet or text (default json).",
    )
    group.add_argument(
        "--split",
        "--train_split",
        dest="split",
        default="train",
        help="Split to read, e.g. train or 'train[:90%%]' (default train).",
    )
    group.add_argument(
        "--text_template",
        help=(
            r"Template over each record's fields, e.g. "
            r"'<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>'."
        ),
    )
    group.add_argument("--text_field", help="Use this one field of each record as the text.")
    group.add_argument(
        "--use_chat_template",
        action="store_true",
        help="Render 'messages' (or prompt/response) fields with the model's chat template.",
    )
    group.add_argument("--max_samples", type=int, help="Use at most this many records.")
    return group


def data_config_from_args(args: argparse.Namespace, name: str):
    """The data config the flags describe, checked on the files right away; None without --data_files."""
    from olivepress.data import data_config_from_flags, preview_texts

    if not args.data_files:
        return None
    config = data_config_from_flags(
        split_commas(args.data_files),
        data_name=args.data_name,
        split=args.split,
        text_template=args.text_template,
        text_field=args.text_field,
        use_chat_template=args.use_chat_template,
        max_samples=args.max_samples,
        name=name,
    )
    if not args.use_chat_template:
        preview_texts(config)  # a bad file or template fails here, in a second, not after loading a model
    return config


def split_commas(value: str | None) -> list[str]:
    """A comma-separated flag ("a.jsonl,b.jsonl", "q_proj,v_proj") as a list; [] when not given."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]

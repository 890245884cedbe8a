"""The data of the shipped lm-eval tasks, read from the JSONL beside this file (lm-eval's
`custom_dataset` hook: a task YAML names a function here instead of a hub data set)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def travel_mc(**_task_metadata: Any):
    """olivepress_travel_mc's questions as a DatasetDict with one 'test' split."""
    import datasets

    lines = (HERE / "olivepress_travel_mc.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})

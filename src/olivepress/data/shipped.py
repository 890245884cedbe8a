"""Text and example data that ship inside the package (written for olivepress, no downloads).

- `text/calibration.txt`: varied English prose; the default source of quantizer calibration.
- `text/*.txt` other than calibration: held-out prose for perplexity. It is never used for
  calibration, so a quantizer cannot fit the very text it is then measured on.
- `examples/*.jsonl`: small data sets for the README's demos (`travel_qa`: prompt/response).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from olivepress.errors import OlivepressError, did_you_mean

CALIBRATION_TEXT = "calibration"


def _text_files() -> dict[str, Path]:
    folder = resources.files("olivepress.data") / "text"
    return {Path(f.name).stem: Path(str(f)) for f in folder.iterdir() if f.name.endswith(".txt")}


def shipped_text(name: str) -> str:
    """The shipped text file `text/<name>.txt`."""
    files = _text_files()
    if name not in files:
        raise OlivepressError(
            f"no shipped text named '{name}'{did_you_mean(name, files)}; available: "
            f"{', '.join(sorted(files))}"
        )
    return files[name].read_text(encoding="utf-8")


def heldout_names() -> list[str]:
    """Names of the shipped texts meant for perplexity (all but the calibration text)."""
    return sorted(name for name in _text_files() if name != CALIBRATION_TEXT)


def heldout_text(name: str = "heldout") -> str:
    """A held-out shipped text, for perplexity; the calibration text is refused on purpose."""
    names = heldout_names()
    if name not in names:
        extra = " (it is the calibration text, so perplexity on it would flatter a quantized model)"
        why = extra if name == CALIBRATION_TEXT else did_you_mean(name, names)
        raise OlivepressError(f"'{name}' is not a held-out text{why}; choose one of {', '.join(names)}")
    return shipped_text(name)


def example_data_path(name: str = "travel_qa") -> Path:
    """Path of a shipped example data set, e.g. for `--data_files` in the README demo."""
    folder = resources.files("olivepress.data") / "examples"
    files = {Path(f.name).stem: Path(str(f)) for f in folder.iterdir() if f.name.endswith(".jsonl")}
    if name not in files:
        raise OlivepressError(
            f"no example data set named '{name}'{did_you_mean(name, files)}; available: "
            f"{', '.join(sorted(files))}"
        )
    return files[name]

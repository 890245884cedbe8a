"""One-line explanations of an adapter that does not fit a model (PEFT's are a line per tensor)."""

from __future__ import annotations

import re

from olivepress.errors import OlivepressError

_MISMATCH = re.compile(
    r"size mismatch for (?P<name>\S+): copying a param with shape (?P<saved>torch\.Size\(\[[^\]]*\]\)) "
    r"from checkpoint, "
    r"the shape in current model is (?P<model>torch\.Size\(\[[^\]]*\]\))"
)


def adapter_mismatch_error(exc: BaseException, adapter_path: str, model_path: str) -> OlivepressError:
    """`exc` from loading an adapter, as one line naming the first tensor whose size differs."""
    text = str(exc)
    found = list(_MISMATCH.finditer(text))
    if not found:
        detail = " ".join(text.split())
        return OlivepressError(
            f"the adapter at {adapter_path} does not fit the model at {model_path}: {detail}"
        )
    first = found[0]
    name = first["name"].removeprefix("base_model.model.")
    saved, current = (_shape(first[key]) for key in ("saved", "model"))
    more = f" (and {len(found) - 1} more tensors)" if len(found) > 1 else ""
    return OlivepressError(
        f"the adapter at {adapter_path} was trained on another base model than {model_path}: {name} is "
        f"{saved} "
        f"in the adapter but {current} in the model{more}; use the base model the adapter was trained on"
    )


def _shape(text: str) -> str:
    return "[" + text.removeprefix("torch.Size([").removesuffix("])") + "]"

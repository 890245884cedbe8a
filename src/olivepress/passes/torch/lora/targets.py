"""Which Linear layers an adapter goes on.

The default is every attention and MLP projection: the QLoRA paper's finding, since confirmed
widely, is that adapting all of them beats adapting only q/v at the same parameter budget.
A known architecture's projections come from its family (models/families.py); any other
model gets every Linear inside its decoder layers (which is the same set for the known ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from olivepress.errors import OlivepressError, did_you_mean
from olivepress.models.families import find_family

if TYPE_CHECKING:
    from torch import nn


def linear_names(model: nn.Module) -> list[str]:
    """Short names of the Linear layers an adapter can go on (the output head excluded)."""
    from torch import nn

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = []
    for full_name, module in model.named_modules():
        # bitsandbytes' Linear4bit (a QLoRA base) is a Linear subclass, so it counts too.
        if isinstance(module, nn.Linear) and module is not head:
            names.append(full_name.rsplit(".", 1)[-1])
    return list(dict.fromkeys(names))


def resolve_targets(model: nn.Module, requested: list[str] | None) -> list[str]:
    """`requested` checked against the model, or the default for its architecture."""
    available = linear_names(model)
    if requested in (["all-linear"], ["all"]):  # PEFT's spelling of "every Linear but the head"
        return available
    if requested is None:
        config = getattr(model, "config", None)
        family = find_family(config)
        targets = [name for name in family.lora_targets if name in available] if family else available
        if not targets:
            model_type = getattr(config, "model_type", "") or "model"
            raise OlivepressError(
                f"found no Linear layers to put an adapter on in this {model_type}; set target_modules"
            )
        return targets
    for name in requested:
        if name not in available:
            model_type = getattr(getattr(model, "config", None), "model_type", "this model")
            raise OlivepressError(
                f"target module '{name}' is not a Linear layer of this {model_type} "
                f"model{did_you_mean(name, available)}; "
                f"its Linear layers are {', '.join(available)} (leave target_modules unset for all of them)"
            )
    return list(requested)

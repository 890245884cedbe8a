"""Which Linear layers an adapter goes on.

The default is every attention and MLP projection: the QLoRA paper's finding, since confirmed
widely, is that adapting all of them beats adapting only q/v at the same parameter budget.
Known architectures are listed by name; any other model gets every Linear inside its
decoder layers (which is the same set for the known ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from olivepress.errors import OlivepressError, did_you_mean

if TYPE_CHECKING:
    from torch import nn

_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEFAULT_TARGETS: dict[str, list[str]] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "olmo": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE,
    "smollm3": _LLAMA_LIKE,
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
}


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
        model_type = getattr(getattr(model, "config", None), "model_type", "")
        default = DEFAULT_TARGETS.get(model_type)
        targets = [name for name in default if name in available] if default else available
        if not targets:
            raise OlivepressError(f"found no Linear layers to put an adapter on in this {model_type or 'model'}; set target_modules")
        return targets
    for name in requested:
        if name not in available:
            model_type = getattr(getattr(model, "config", None), "model_type", "this model")
            raise OlivepressError(
                f"target module '{name}' is not a Linear layer of this {model_type} model{did_you_mean(name, available)}; "
                f"its Linear layers are {', '.join(available)} (leave target_modules unset for all of them)"
            )
    return list(requested)


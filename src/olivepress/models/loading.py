"""Loading an HfModel handle into PyTorch for the passes that need one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_causal_lm(model: HfModel, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """The model as a float PyTorch causal LM (adapter not applied).

    Quantized checkpoints in the AWQ / GPTQ layouts load as float models whose weights are
    exactly the dequantised grid, so later passes train and export against that grid.
    """
    import torch
    from transformers import AutoModelForCausalLM

    method = model.quantization_method()
    if method is not None:
        if method not in ("awq", "gptq"):
            raise OlivepressError(
                f"{model.path} is quantized with '{method}', which olivepress cannot load into PyTorch; "
                "use an AWQ or GPTQ checkpoint or the float model it was made from"
            )
        from olivepress.quant.checkpoint import load_dequantized

        return load_dequantized(model, dtype)
    kwargs: dict[str, Any] = dict(model.load_kwargs)
    kwargs.setdefault("dtype", dtype or torch.float32)
    return AutoModelForCausalLM.from_pretrained(model.path, **kwargs)


def load_tokenizer(model: HfModel) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    trust = bool(model.load_kwargs.get("trust_remote_code", False))
    return AutoTokenizer.from_pretrained(model.path, trust_remote_code=trust)

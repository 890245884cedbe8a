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
        return load_dequantized(model, dtype)
    kwargs: dict[str, Any] = dict(model.load_kwargs)
    kwargs.setdefault("dtype", dtype or torch.float32)
    return AutoModelForCausalLM.from_pretrained(model.path, **kwargs)


def load_tokenizer(model: HfModel) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    trust = bool(model.load_kwargs.get("trust_remote_code", False))
    return AutoTokenizer.from_pretrained(model.path, trust_remote_code=trust)


def load_dequantized(model: HfModel, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """An AWQ / GPTQ folder as a float causal LM whose Linear weights are the dequantised grid."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    from olivepress.quant.checkpoint import read_quantized

    dtype = dtype or torch.float32
    trust = bool(model.load_kwargs.get("trust_remote_code", False))
    quantized, tensors, _ = read_quantized(model.folder)
    config = AutoConfig.from_pretrained(model.path, trust_remote_code=trust)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with no_init_weights():
        lm = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust)
    state = {name: t.to(dtype) if t.is_floating_point() else t for name, t in tensors.items()}
    for name, q in quantized.items():
        # float32 holds the grid exactly; a narrower dtype rounds it as loading would anyway
        state[f"{name}.weight"] = q.dequantize().to(dtype)
    missing, unexpected = lm.load_state_dict(state, strict=False)
    tied = set()
    if config.tie_word_embeddings:
        tied = set(getattr(lm, "all_tied_weights_keys", None) or {}) | {"lm_head.weight"}
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise OlivepressError(
            f"{model.path} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}; "
            "the checkpoint is incomplete or was written for another architecture"
        )
    if config.tie_word_embeddings:
        lm.tie_weights()
    return lm.eval()

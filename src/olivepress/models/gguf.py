"""GGUF input: transformers reads (and dequantises) a .gguf file; we convert it once into a
plain HF folder kept in the olivepress cache, keyed by the file's content fingerprint.

A GGUF file may hold a tied model's one matrix twice, as `token_embd` and `output`, each quantized
on its own grid (Qwen2.5-0.5B's: Q5_0 and Q8_0); transformers then loads an untied model. When the
two agree within quantization noise, the conversion ties them again with the finer copy, so the
model is as it was trained, and is stored (and later quantized) once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from olivepress.errors import OlivepressError
from olivepress.models.fingerprint import file_digest
from olivepress.paths import atomic_folder, olivepress_home

log = logging.getLogger("olivepress")

CONVERSION_VERSION = 2  # 2: tied models' two quantized copies are tied again
# Two quantized copies of one matrix differ by their quantization noise: a few percent of its
# norm (Q5_0: ~4%, Q2_K: ~25%); an untied model's head and embeddings differ by about 100%.
SAME_MATRIX_RELATIVE_DIFF = 0.5


def converted_gguf_folder(gguf_file: Path) -> Path:
    """The HF folder converted from `gguf_file`, converting it on first use."""
    gguf_file = gguf_file.resolve()
    digest = file_digest(gguf_file)[:16]
    target = olivepress_home() / "gguf" / f"{gguf_file.stem}-{digest}-v{CONVERSION_VERSION}"
    if (target / "config.json").is_file():
        return target
    log.info("Converting %s to a Hugging Face folder (once; cached in %s)", gguf_file.name, target)
    with atomic_folder(target) as tmp:
        _convert(gguf_file, tmp)
    return target


def _convert(gguf_file: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_file.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, **kwargs)
    except (ValueError, KeyError, OSError) as exc:
        raise OlivepressError(
            f"cannot read {gguf_file} as a GGUF model ({exc}); transformers reads GGUF files of the "
            "architectures it lists under 'GGUF' support"
        ) from exc
    # transformers marks a GGUF-loaded model as quantized although its weights are already
    # dequantised floats; clear that so it saves as an ordinary float checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _tie_copies_of_one_matrix(model, gguf_file)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _tie_copies_of_one_matrix(model: Any, gguf_file: Path) -> None:
    """Tie lm_head to the embeddings when the file holds one matrix twice (see the module doc)."""
    import torch

    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if model.config.tie_word_embeddings or head is None or head.weight.shape != embeddings.weight.shape:
        return
    with torch.no_grad():
        difference = float((head.weight - embeddings.weight).norm() / head.weight.norm())
    if difference > SAME_MATRIX_RELATIVE_DIFF:
        return
    bits = _bits_per_weight(gguf_file)
    head_bits, embedding_bits = bits.get("output.weight", 0.0), bits.get("token_embd.weight", 0.0)
    with torch.no_grad():
        if head_bits > embedding_bits:
            embeddings.weight.copy_(head.weight)
    model.config.tie_word_embeddings = True
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = True
    model.tie_weights()
    log.info(
        "%s holds lm_head and the embeddings as two quantized copies of one matrix (%.1f%% apart); "
        "tied them again with the finer copy (%.1f bits a weight)",
        gguf_file.name,
        100 * difference,
        max(head_bits, embedding_bits),
    )


def _bits_per_weight(gguf_file: Path) -> dict[str, float]:
    import gguf

    reader = gguf.GGUFReader(gguf_file)
    sizes = {}
    for tensor in reader.tensors:
        block, type_bytes = gguf.GGML_QUANT_SIZES[tensor.tensor_type]
        sizes[tensor.name] = 8 * type_bytes / block
    return sizes

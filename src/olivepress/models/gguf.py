"""GGUF input: transformers reads (and dequantises) a .gguf file; we convert it once into a
plain HF folder kept in the olivepress cache, keyed by the file's content fingerprint."""

from __future__ import annotations

import logging
from pathlib import Path

from olivepress.errors import OlivepressError
from olivepress.models.fingerprint import file_digest
from olivepress.paths import atomic_folder, olivepress_home

log = logging.getLogger("olivepress")


def converted_gguf_folder(gguf_file: Path) -> Path:
    """The HF folder converted from `gguf_file`, converting it on first use."""
    gguf_file = gguf_file.resolve()
    target = olivepress_home() / "gguf" / f"{gguf_file.stem}-{file_digest(gguf_file)[:16]}"
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
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

"""MergeAdapterWeights: fold a PEFT adapter into its base model; the output is a plain HF folder."""

from __future__ import annotations

from pathlib import Path

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel
from olivepress.models.loading import load_causal_lm, load_tokenizer
from olivepress.passes.base import PassConfig, PassContext

VERSION = 1
ACCEPTS = ("hf",)


class Config(PassConfig):
    """No options: the adapter comes with the input model (its adapter_path)."""


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> HfModel:
    from peft import PeftModel

    if not model.adapter_path:
        raise OlivepressError(
            f"MergeAdapterWeights needs a model with a PEFT adapter, but {model.path} has none; "
            "put it after a LoRA pass or set input_model.adapter_path"
        )
    base = load_causal_lm(model)
    try:
        peft_model = PeftModel.from_pretrained(base, model.adapter_path)
    except (RuntimeError, ValueError, KeyError) as exc:
        from olivepress.passes.torch.lora.fit import adapter_mismatch_error

        raise adapter_mismatch_error(exc, model.adapter_path, model.path) from exc
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(out_dir)
    load_tokenizer(model).save_pretrained(out_dir)
    ctx.log.info("Merged adapter %s into %s", model.adapter_path, model.path)
    return HfModel(
        path=str(out_dir),
        task=model.task,
        load_kwargs={key: value for key, value in model.load_kwargs.items() if key == "trust_remote_code"},
    )

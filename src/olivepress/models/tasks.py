"""Which head a Hugging Face model has for a task, and loading it with that head.

The generic ONNX export (passes/onnx/export.py) and the check of its result against PyTorch
(evaluate/parity.py) both load the model this way, so they compare the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from olivepress.errors import OlivepressError, did_you_mean, first_line
from olivepress.models.handles import HfModel

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class TaskSpec:
    auto_class: str
    # Output name -> the name of each axis (None: a fixed size, such as hidden or vocab).
    outputs: dict[str, tuple[str | None, ...]]


TASKS: dict[str, TaskSpec] = {
    "feature-extraction": TaskSpec("AutoModel", {"last_hidden_state": ("batch", "sequence", None)}),
    "text-classification": TaskSpec("AutoModelForSequenceClassification", {"logits": ("batch", None)}),
    "token-classification": TaskSpec(
        "AutoModelForTokenClassification", {"logits": ("batch", "sequence", None)}
    ),
    "fill-mask": TaskSpec("AutoModelForMaskedLM", {"logits": ("batch", "sequence", None)}),
    "question-answering": TaskSpec(
        "AutoModelForQuestionAnswering",
        {"start_logits": ("batch", "sequence"), "end_logits": ("batch", "sequence")},
    ),
    "text-generation": TaskSpec("AutoModelForCausalLM", {"logits": ("batch", "sequence", None)}),
}
TASK_ALIASES = {
    "default": "feature-extraction",
    "sentence-similarity": "feature-extraction",
    "sentence-embeddings": "feature-extraction",
    "embedding": "feature-extraction",
    "sequence-classification": "text-classification",
    "sentiment-analysis": "text-classification",
    "ner": "token-classification",
    "masked-lm": "fill-mask",
    "causal-lm": "text-generation",
}
# The input model's task when nobody set one (HfModel's default): the architecture decides then.
UNSET_TASK = "text-generation"
# Suffix of the class names in config.json's `architectures` -> task.
ARCHITECTURE_TASKS = (
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("Model", "feature-extraction"),
)


def resolve_task(option: str | None, model_task: str | None, architectures: list[str] | None) -> str:
    """The task to export for: the pass option, else the input model's own (when set), else
    the one its architecture implies."""
    if option:
        return normalize_task(option)
    if model_task and model_task != UNSET_TASK:
        return normalize_task(model_task)
    for architecture in architectures or []:
        for suffix, task in ARCHITECTURE_TASKS:
            if architecture.endswith(suffix):
                return task
    return normalize_task(model_task or "feature-extraction")


def normalize_task(task: str) -> str:
    name = task.strip().lower().replace("_", "-")
    name = TASK_ALIASES.get(name, name)
    if name in TASKS:
        return name
    if name.endswith("-with-past"):
        raise OlivepressError(
            f"task '{task}': OnnxConversion exports without a KV cache; "
            "for a decoder LLM with one use ModelBuilder"
        )
    raise OlivepressError(
        f"OnnxConversion cannot export task '{task}'{did_you_mean(name, TASKS)}; tasks: {', '.join(TASKS)}"
    )


def load_for_task(model: HfModel, task: str) -> PreTrainedModel:
    """The model with the head `task` needs, in float32 and eval mode (PEFT adapter merged)."""
    import torch
    import transformers

    method = model.quantization_method()
    if method is not None:
        raise OlivepressError(
            f"{model.path} is a '{method}' quantized checkpoint, which torch.onnx cannot export; "
            "export the float model and quantize the ONNX model "
            "(OnnxMatMul4Quantizer, OnnxDynamicQuantization), or use ModelBuilder"
        )
    auto_class = getattr(transformers, TASKS[task].auto_class)
    kwargs = dict(model.load_kwargs)
    kwargs.setdefault("dtype", torch.float32)
    # Eager attention exports to plain MatMul/Softmax, which every exporter handles and
    # onnxruntime's fusions turn back into one Attention op.
    kwargs.setdefault("attn_implementation", "eager")
    try:
        loaded = auto_class.from_pretrained(model.path, **kwargs)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise OlivepressError(
            f"cannot load {model.path} for {task} ({TASKS[task].auto_class}): {first_line(exc)}; "
            "set the pass's task to one this model has a head for"
        ) from exc
    if model.adapter_path:
        from peft import PeftModel

        loaded = PeftModel.from_pretrained(loaded, model.adapter_path).merge_and_unload()
    if task == "text-generation":
        loaded.config.use_cache = False
    return loaded.eval()

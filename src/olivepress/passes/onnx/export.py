"""OnnxConversion: a Hugging Face model into one ONNX file with torch.onnx.export.

This is the generic path, for what the ORT GenAI builder does not build: encoders
(feature-extraction), classifiers, masked LMs, QA heads, and causal LMs without a KV cache.
The graph takes `input_ids`, `attention_mask` (and `token_type_ids` where the model has token
types) with dynamic batch and sequence axes, and returns the task's outputs.

Which exporter (torch 2.13): the model is loaded with eager attention and exported with the
TorchScript exporter first, then with the dynamo exporter if that fails. TorchScript comes
first because its graphs are the ones onnxruntime's transformer fusions recognise (Attention,
EmbedLayerNormalization); the dynamo exporter's graphs of transformers 5 models fuse
LayerNorm and GELU only. Either way the ONNX model is run on inputs of another batch size
and length than the traced ones, with padding, and compared with PyTorch: a trace that baked
in a shape or a branch is caught here, and the next exporter is tried.

The folder is self-contained: config.json, the tokenizer files and the other small files of
the Hugging Face folder are copied beside model.onnx. A PEFT adapter is merged first.
"""

from __future__ import annotations

import inspect
import json
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from olivepress.capture import output_to_file
from olivepress.errors import OlivepressError, first_line
from olivepress.models.handles import HfModel, OnnxModel
from olivepress.models.tasks import TASKS, load_for_task, resolve_task
from olivepress.passes.base import PassContext
from olivepress.passes.onnx.model_files import (
    OnnxOutputConfig,
    copy_beside,
    load_model,
    set_metadata,
    write_model,
)

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import PreTrainedModel

VERSION = 1
ACCEPTS = ("hf",)

Exporter = Literal["torchscript", "dynamo"]


WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".gguf",
    ".onnx",
    ".onnx_data",
    ".data",
)


class Config(OnnxOutputConfig):
    task: str | None = Field(
        None,
        description="feature-extraction, text-classification, "
        "token-classification, fill-mask, question-answering "
        "or text-generation (no KV cache); default: the input model's task, else config.json's architecture.",
    )
    target_opset: int = Field(17, ge=11, description="Version of the default ONNX opset to export to.")
    exporter: Literal["auto", "torchscript", "dynamo"] = Field(
        "auto",
        description=(
            "auto: TorchScript (fuses best in onnxruntime), then dynamo if that fails or gives wrong outputs."
        ),
    )
    use_dynamo_exporter: bool | None = Field(
        None, description="Olive's spelling: true = exporter dynamo, false = torchscript."
    )
    dynamic: bool = Field(
        True, description="Dynamic batch and sequence axes; false fixes them at batch_size x sequence_length."
    )
    batch_size: int = Field(2, ge=1, description="Batch size of the example inputs the model is traced with.")
    sequence_length: int = Field(16, ge=2, description="Tokens per example input the model is traced with.")
    verify: bool = Field(
        True, description="Run the ONNX model and compare it with PyTorch before accepting it."
    )
    verify_tolerance: float = Field(
        1e-3,
        gt=0,
        description="Largest accepted |onnx - torch| relative to the output's scale (max(1, max |torch|)).",
    )

    @model_validator(mode="after")
    def _one_exporter_choice(self) -> Config:
        if self.use_dynamo_exporter is not None and self.exporter != "auto":
            wanted = "dynamo" if self.use_dynamo_exporter else "torchscript"
            if wanted != self.exporter:
                raise ValueError(
                    f"exporter '{self.exporter}' and use_dynamo_exporter={self.use_dynamo_exporter} "
                    "disagree; set one"
                )
        return self

    def exporters(self) -> list[Exporter]:
        if self.use_dynamo_exporter is not None:
            return ["dynamo" if self.use_dynamo_exporter else "torchscript"]
        return ["torchscript", "dynamo"] if self.exporter == "auto" else [self.exporter]


def run(model: HfModel, config: Config, out_dir: Path, ctx: PassContext) -> OnnxModel:
    import onnx

    if config.target_opset > onnx.defs.onnx_opset_version():
        raise OlivepressError(
            f"target_opset {config.target_opset} is newer than this onnx package knows "
            f"({onnx.defs.onnx_opset_version()}); lower target_opset or upgrade onnx"
        )
    hf_config = _read_config(model)
    task = resolve_task(config.task, model.task, hf_config.get("architectures"))
    torch_model = load_for_task(model, task)
    input_names = _input_names(torch_model, task)
    output_names = list(TASKS[task].outputs)
    ctx.log.info(
        "Exporting %s as %s (inputs: %s; outputs: %s)",
        model.path,
        task,
        ", ".join(input_names),
        ", ".join(output_names),
    )

    vocab_size = int(getattr(torch_model.config, "vocab_size", 0) or 100)
    max_positions = getattr(torch_model.config, "max_position_embeddings", None)
    trace_inputs = example_inputs(input_names, vocab_size, config.batch_size, config.sequence_length, seed=0)
    check_shape = (config.batch_size, config.sequence_length)
    if config.dynamic:  # another batch size and length than the trace, so baked-in shapes show
        longer = config.sequence_length + 3
        check_shape = (config.batch_size + 1, min(longer, max_positions) if max_positions else longer)
    check_inputs = example_inputs(input_names, vocab_size, *check_shape, seed=1)
    wrapper = _wrap(torch_model, input_names, output_names, task)
    # Reference outputs before any export: an exporter may switch the module's train/eval mode.
    reference = _torch_outputs(wrapper, check_inputs)

    failures = []
    log_file = out_dir.parent / "onnx_export.log"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as scratch:
        for exporter in config.exporters():
            path = Path(scratch) / exporter / "model.onnx"
            path.parent.mkdir()
            started = time.perf_counter()
            try:
                with output_to_file(log_file, status=f"exporting to ONNX ({exporter} exporter)"):
                    _export(exporter, wrapper, trace_inputs, path, input_names, output_names, task, config)
            except Exception as exc:
                ctx.log.debug("%s exporter failed:\n%s", exporter, traceback.format_exc())
                failures.append(f"{exporter} exporter: {first_line(exc)}")
                continue
            if config.verify:
                problem = _compare(path, check_inputs, reference, config.verify_tolerance)
                if problem:
                    failures.append(f"{exporter} exporter: {problem}")
                    continue
            if failures:
                ctx.log.info("Fell back to the %s exporter (%s)", exporter, "; ".join(failures))
            ctx.log.info(
                "Exported with the %s exporter in %.1f s%s",
                exporter,
                time.perf_counter() - started,
                "; outputs match PyTorch" if config.verify else " (not verified)",
            )
            onnx_model = load_model(path)
            set_metadata(onnx_model, task=task, exporter=exporter)
            copy_beside(Path(model.path), out_dir, _is_weight_or_export)
            return write_model(onnx_model, out_dir, config)
    tried = config.exporters()
    hint = (
        f"try exporter '{'dynamo' if tried == ['torchscript'] else 'torchscript'}'"
        if len(tried) == 1
        else "the model probably uses an op or Python control flow ONNX cannot express (raise "
        "verify_tolerance if "
        "the differences are small); for a decoder LLM use ModelBuilder"
    )
    raise OlivepressError(
        f"OnnxConversion could not export {model.path} as {task}: {'; '.join(failures)} ({hint}; "
        f"exporter output: {log_file})"
    )


def example_inputs(
    input_names: list[str], vocab_size: int, batch: int, length: int, seed: int
) -> dict[str, torch.Tensor]:
    """Random token ids with a right-padded row, so the attention mask is never all ones (a
    model may skip its mask then, and a trace would lose it)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(5, vocab_size - 1), vocab_size, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    padded_row = (batch - 1) if seed % 2 == 0 else 0
    mask[padded_row, max(1, length // 2 + seed) :] = 0
    tensors = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
    }
    return {name: tensors[name] for name in input_names}


def _read_config(model: HfModel) -> dict[str, Any]:
    path = Path(model.path) / "config.json"
    if not path.is_file():
        raise OlivepressError(
            f"{model.path} has no config.json; OnnxConversion takes a Hugging Face model folder"
        )
    return json.loads(path.read_text())


def _input_names(model: PreTrainedModel, task: str) -> list[str]:
    accepted = inspect.signature(model.forward).parameters
    if "input_ids" not in accepted:
        raise OlivepressError(
            f"{type(model).__name__} takes no input_ids; OnnxConversion exports text models only"
        )
    names = ["input_ids"]
    if "attention_mask" in accepted:
        names.append("attention_mask")
    # Only where token types mean something (BERT: 2); RoBERTa-like models have 1.
    if (
        task != "text-generation"
        and "token_type_ids" in accepted
        and (getattr(model.config, "type_vocab_size", 0) or 0) > 1
    ):
        names.append("token_type_ids")
    return names


def _wrap(
    model: PreTrainedModel, input_names: list[str], output_names: list[str], task: str
) -> torch.nn.Module:
    """The model as a module of named tensors returning a tuple, which both exporters take."""
    import torch

    extra = {"use_cache": False} if task == "text-generation" else {}

    class ExportWrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor | None = None,
            token_type_ids: torch.Tensor | None = None,
        ) -> tuple[torch.Tensor, ...]:
            given = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
            }
            outputs = self.model(**{name: given[name] for name in input_names}, **extra, return_dict=True)
            return tuple(outputs[name] for name in output_names)

    return ExportWrapper().eval()


def _torch_outputs(wrapper: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        return [t.float().numpy() for t in wrapper(**inputs)]


def _export(
    exporter: Exporter,
    wrapper: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    task: str,
    config: Config,
) -> None:
    import torch

    dynamic_axes = None
    if config.dynamic:
        dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
        for name, axes in TASKS[task].outputs.items():
            dynamic_axes[name] = {index: axis for index, axis in enumerate(axes) if axis}
    common = dict(
        input_names=input_names,
        output_names=output_names,
        opset_version=config.target_opset,
        dynamic_axes=dynamic_axes,
    )
    # Tracer and deprecation warnings say what the comparison with PyTorch checks anyway.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(
                wrapper, (), str(path), kwargs=inputs, dynamo=False, do_constant_folding=True, **common
            )
        else:
            torch.onnx.export(
                wrapper,
                (),
                str(path),
                kwargs=inputs,
                dynamo=True,
                external_data=True,
                optimize=True,
                **common,
            )


def _compare(
    path: Path, inputs: dict[str, torch.Tensor], reference: list[np.ndarray], tolerance: float
) -> str | None:
    """None when the ONNX model's outputs match PyTorch's, else what is wrong."""
    import numpy as np
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs = session.run(None, {name: tensor.numpy() for name, tensor in inputs.items()})
    except Exception as exc:
        return f"onnxruntime cannot run the exported model: {first_line(exc)}"
    for name, got, want in zip([o.name for o in session.get_outputs()], outputs, reference, strict=True):
        if got.shape != want.shape:
            return f"output {name} has shape {list(got.shape)} where PyTorch gives {list(want.shape)}"
        error = (
            float(np.nanmax(np.abs(got.astype(np.float32) - want)))
            if np.isfinite(got).all()
            else float("inf")
        )
        scale = max(1.0, float(np.abs(want).max()))
        if error / scale > tolerance:
            return (
                f"output {name} differs from PyTorch (max relative error {error / scale:.3g} > "
                f"verify_tolerance {tolerance:g})"
            )
    return None


def _is_weight_or_export(path: Path) -> bool:
    name = path.name
    return name.endswith(WEIGHT_SUFFIXES) or name.endswith(".index.json") or name == "onnx"

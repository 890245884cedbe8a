"""Check before hand-over: does the ORT GenAI model compute what the PyTorch model does?

The check verifies the conversion, not the quantization. The ONNX model is compared with a
PyTorch model that holds the same grid for every weight the ONNX model quantizes (lm_head and
embeddings included, whichever pass quantized them: evaluate/onnx_grid.py reads them back),
and the same adapter values (an adapter stored at int8 / int4 is compared as stored). What
is left is how the ONNX kernels compute: float rounding, or int8 activations where the
quantized MatMuls run at accuracy level 4. Tolerances (mean |Δlogits| over every position
of the check's prompts): 1e-3 when the quantized MatMuls compute in fp32 (accuracy level
0 / 1, or none quantized), 0.1 otherwise; the same top token at 99% of positions or more.

The cost of quantizing is reported beside it, never as a failed check: the perplexity of the
ONNX model on the same prompts against that of the PyTorch model as given.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel

DEFAULT_PROMPTS = (
    "What is the best thing to see in Chicago?",
    "Give me three tips for packing light.",
    "Explain what a neural network is in one sentence.",
)
FP32_TOLERANCE = 1e-3  # mean |Δlogits| when every MatMul computes in fp32
LOW_PRECISION_TOLERANCE = 0.1  # ... when quantized MatMuls take int8 (or fp16 / bf16) activations
MIN_TOP1 = 0.99
_LORA = re.compile(r"^model\.layers\.(\d+)\.(attn|mlp)\.(\w+)\.lora_([AB])\.MatMul\.weight$")


@dataclass
class VariantParity:
    adapter: str
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    sample: str
    positions: int = 0
    perplexity_pytorch: float = math.nan  # the PyTorch model as given (not on the ONNX grid)
    perplexity_onnx: float = math.nan


@dataclass
class ParityReport:
    prompts: int
    variants: list[VariantParity] = field(default_factory=list)
    tolerance: float = FP32_TOLERANCE
    difference_from: str = ""  # what the remaining difference comes from
    same_grid: list[str] = field(default_factory=list)  # PyTorch modules given the ONNX model's weights

    @property
    def passed(self) -> bool:
        return all(v.mean_abs_diff <= self.tolerance and v.top1_agreement >= MIN_TOP1 for v in self.variants)

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def lines(self) -> list[str]:
        verdict = "passed" if self.passed else "FAILED"
        lines = [
            f"conversion check {verdict}: against PyTorch on the ONNX model's grid ({len(self.same_grid)} "
            f"weights); tolerance mean |diff| <= {self.tolerance:g}, same top token (ties within it count) "
            f">= {MIN_TOP1:.0%}; "
            f"the difference comes from {self.difference_from}"
        ]
        for v in self.variants:
            cost = v.perplexity_onnx / v.perplexity_pytorch - 1
            lines.append(
                f"{v.adapter:>12}: logits max |diff| {v.max_abs_diff:.4f}, mean {v.mean_abs_diff:.5f}, "
                f"same top token {v.top1_agreement:.0%} of {v.positions}; quantization cost: perplexity "
                f"{v.perplexity_pytorch:.3f} -> {v.perplexity_onnx:.3f} ({cost:+.1%}); sample: {v.sample!r}"
            )
        return lines


def check_parity(
    onnx_dir: Path,
    reference: HfModel,
    adapters: dict[str, Path] | None = None,
    prompts: tuple[str, ...] = DEFAULT_PROMPTS,
    sample_tokens: int = 12,
) -> ParityReport:
    """Compare `onnx_dir` (an ORT GenAI folder) with `reference` put on the ONNX model's grid,
    with no adapter and with each PEFT adapter in `adapters` (name -> PEFT folder; the ONNX
    model must know the same names)."""
    import numpy as np
    import torch

    from olivepress.evaluate.onnx_grid import put_weights, read_quantized_weights
    from olivepress.models.loading import load_causal_lm
    from olivepress.runtime.adapters import model_file
    from olivepress.runtime.generate import BASE, GenAIModel, SearchOptions

    onnx_model = GenAIModel(onnx_dir)
    missing = set(adapters or {}) - set(onnx_model.adapter_names)
    if missing:
        raise OlivepressError(f"the ONNX model has no adapter named {sorted(missing)[0]} to check")
    token_lists = [onnx_model.encode(onnx_model.format_prompt(p)) for p in prompts]
    quantized = read_quantized_weights(model_file(onnx_model.folder))
    as_given = load_causal_lm(reference).eval()
    on_grid = load_causal_lm(reference).eval()
    report = ParityReport(prompts=len(prompts), same_grid=put_weights(on_grid, quantized.weights))
    fp32_only = set(quantized.accuracy_levels) <= {0, 1} and _float_type(onnx_model.folder) == "fp32"
    report.tolerance = FP32_TOLERANCE if fp32_only else LOW_PRECISION_TOLERANCE
    report.difference_from = _difference_from(
        quantized.activation_summary(), fp32_only, _float_type(onnx_model.folder)
    )
    for name, peft_dir in [(BASE, None), *sorted((adapters or {}).items())]:
        given, grid = as_given, on_grid
        if peft_dir is not None:
            from peft import PeftModel

            given = PeftModel.from_pretrained(as_given, str(peft_dir)).eval()
            grid = PeftModel.from_pretrained(on_grid, str(peft_dir)).eval()
            _put_adapter_as_stored(grid, onnx_model, name)
        diffs, agree, positions, nll_given, nll_onnx = [], 0, 0, [], []
        for ids in token_lists:
            try:
                actual = np.asarray(onnx_model.logits(ids, adapter=name), dtype=np.float32)
            except Exception as exc:
                raise OlivepressError(f"the ONNX model fails to run with adapter '{name}': {exc}") from exc
            with torch.no_grad():
                expected = grid(torch.tensor([ids])).logits[0].float().numpy()
                plain = given(torch.tensor([ids])).logits[0].float().numpy()
            diffs.append(np.abs(actual - expected))
            agree += _same_top_token(actual, expected, report.tolerance)
            positions += len(ids)
            nll_given.append(_next_token_nll(plain, ids))
            nll_onnx.append(_next_token_nll(actual, ids))
        greedy = SearchOptions(max_new_tokens=sample_tokens)
        sample = onnx_model.generate(prompts[0], greedy, adapter=name).text
        stacked = np.concatenate([d.ravel() for d in diffs])
        report.variants.append(
            VariantParity(
                adapter=name,
                max_abs_diff=float(stacked.max()),
                mean_abs_diff=float(stacked.mean()),
                top1_agreement=agree / positions,
                sample=sample,
                positions=positions,
                perplexity_pytorch=float(np.exp(np.concatenate(nll_given).mean())),
                perplexity_onnx=float(np.exp(np.concatenate(nll_onnx).mean())),
            )
        )
        if peft_dir is not None:  # take the adapter off again for the next variant
            as_given, on_grid = given.unload(), grid.unload()
    return report


def _same_top_token(actual, expected, tolerance: float) -> int:
    """Positions where the ONNX model's top token is PyTorch's, or ties with it within the
    tolerance: a near tie in PyTorch's logits (common in random-weight models) may flip under any
    rounding the tolerance admits, and that is not a conversion error."""
    import numpy as np

    picked = np.take_along_axis(expected, actual.argmax(-1)[:, None], axis=-1)[:, 0]
    return int((picked >= expected.max(-1) - tolerance).sum())


def _next_token_nll(logits, ids: list[int]):
    """Negative log-likelihood of each next token of `ids` under `logits` [len, vocab]."""
    import numpy as np

    shifted = logits[:-1].astype(np.float64)
    shifted -= shifted.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(ids) - 1), ids[1:]]


def _float_type(folder: Path) -> str:
    """The model's activation type, from its logits' declared type."""
    import onnx

    from olivepress.runtime.adapters import model_file

    graph = onnx.load(str(model_file(folder)), load_external_data=False).graph
    logits = next((value for value in graph.output if value.name == "logits"), None)
    elem_type = logits.type.tensor_type.elem_type if logits is not None else onnx.TensorProto.FLOAT
    return {onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.BFLOAT16: "bf16"}.get(elem_type, "fp32")


def _difference_from(activations: str, fp32_only: bool, float_type: str) -> str:
    if float_type != "fp32":
        return f"{float_type} activations; {activations}"
    if fp32_only:
        return f"float rounding order in the fp32 kernels ({activations})"
    return activations


def _put_adapter_as_stored(peft_model, onnx_model, adapter: str) -> None:
    """Give the PEFT model's LoRA layers the values the ONNX model's adapter file holds, when
    it stores them at a lower precision than fp32 (fp32: PEFT's own values are the same)."""
    import onnx
    import torch

    from olivepress.runtime.adapter_precision import decode, model_precision
    from olivepress.runtime.adapters import model_file, read_adapter_file

    proto = onnx.load(str(model_file(onnx_model.folder)), load_external_data=False)
    precision = model_precision(proto)
    if precision.name == "fp32":
        return
    modules = dict(peft_model.named_modules())
    for name, matrix in decode(read_adapter_file(onnx_model.adapter_files[adapter]), precision).items():
        match = _LORA.match(name)
        if match is None or matrix.size == 0:
            continue
        layer, block, module, ab = match.groups()
        block = "self_attn" if block == "attn" else block
        lora = modules[f"base_model.model.model.layers.{layer}.{block}.{module}"]
        key = next(iter(lora.lora_A))
        # ONNX holds A as [in, r] and B as [r, out] with PEFT's scaling folded into B.
        value = matrix.T if ab == "A" else matrix.T / lora.scaling[key]
        target = (lora.lora_A if ab == "A" else lora.lora_B)[key]
        target.weight = torch.nn.Parameter(
            torch.from_numpy(value.copy()).to(target.weight.dtype), requires_grad=False
        )


@dataclass
class OnnxParity:
    task: str
    provider: str
    max_abs_diff: float
    min_cosine: float
    mean_cosine: float

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        return [
            f"{self.task} on {self.provider}: first output max |diff| {self.max_abs_diff:.4f}, "
            f"cosine to PyTorch mean {self.mean_cosine:.4f} (min {self.min_cosine:.4f})"
        ]


def check_onnx_parity(
    onnx_dir: Path, reference: HfModel, texts: tuple[str, ...] = DEFAULT_PROMPTS
) -> OnnxParity:
    """Run a plain ONNX model (the generic path's output) and PyTorch on the same texts and compare
    their first outputs per text, over real (unpadded) tokens."""
    import json

    import numpy as np
    import torch

    from olivepress.models.loading import load_tokenizer
    from olivepress.models.onnx_session import inference_session
    from olivepress.models.tasks import load_for_task, resolve_task

    architectures = json.loads((reference.folder / "config.json").read_text()).get("architectures")
    task = resolve_task(None, reference.task, architectures)
    tokenizer = load_tokenizer(reference)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoded = tokenizer(list(texts), padding=True, return_tensors="np")
    try:
        session = inference_session(onnx_dir)
    except Exception as exc:
        raise OlivepressError(f"ONNX Runtime cannot load the result in {onnx_dir}: {exc}") from exc
    feeds = {}
    for value in session.get_inputs():
        array = encoded.get(value.name)
        feeds[value.name] = (array if array is not None else np.zeros_like(encoded["input_ids"])).astype(
            np.int64
        )
    try:
        actual = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
    except Exception as exc:
        raise OlivepressError(f"the ONNX model in {onnx_dir} fails to run: {exc}") from exc
    with torch.no_grad():
        output = load_for_task(reference, task)(
            **{name: torch.from_numpy(array) for name, array in feeds.items()}
        )
    expected = (output[0] if isinstance(output, tuple) else next(iter(output.values()))).float().numpy()
    mask = encoded["attention_mask"].astype(bool)
    cosines, diffs = [], []
    for row in range(len(texts)):
        a, b = actual[row], expected[row]
        if a.ndim >= 1 and a.shape[0] == mask.shape[1]:  # per-token outputs: compare real tokens only
            a, b = a[mask[row]], b[mask[row]]
        a, b = a.ravel(), b.ravel()
        diffs.append(float(np.abs(a - b).max()))
        cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)))
    return OnnxParity(
        task=task,
        provider=session.get_providers()[0],
        max_abs_diff=max(diffs),
        min_cosine=min(cosines),
        mean_cosine=float(np.mean(cosines)),
    )

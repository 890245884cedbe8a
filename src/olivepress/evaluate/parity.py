"""Check before hand-over: does the ORT GenAI model agree with the PyTorch model it came from?

For each prompt, the next-token logits of the ONNX model (with no adapter, and with each
adapter) are compared to PyTorch's (with the adapter applied through PEFT), and a few tokens
are generated with each, so a result that does not load or run never reaches the user.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel

DEFAULT_PROMPTS = (
    "What is the best thing to see in Chicago?",
    "Give me three tips for packing light.",
    "Explain what a neural network is in one sentence.",
)


@dataclass
class VariantParity:
    adapter: str
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    sample: str


@dataclass
class ParityReport:
    prompts: int
    variants: list[VariantParity] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        return [
            f"{v.adapter:>12}: logits max |diff| {v.max_abs_diff:.4f}, mean {v.mean_abs_diff:.5f}, "
            f"same top token {v.top1_agreement:.0%}; sample: {v.sample!r}"
            for v in self.variants
        ]


def check_parity(
    onnx_dir: Path,
    reference: HfModel,
    adapters: dict[str, Path] | None = None,
    prompts: tuple[str, ...] = DEFAULT_PROMPTS,
    sample_tokens: int = 12,
) -> ParityReport:
    """Compare `onnx_dir` (an ORT GenAI folder) with `reference` and each PEFT adapter in `adapters`
    (name -> PEFT folder; the ONNX model must know the same names)."""
    import numpy as np
    import torch

    from olivepress.models.loading import load_causal_lm
    from olivepress.runtime.generate import BASE, GenAIModel, SearchOptions

    onnx_model = GenAIModel(onnx_dir)
    missing = set(adapters or {}) - set(onnx_model.adapter_names)
    if missing:
        raise OlivepressError(f"the ONNX model has no adapter named {sorted(missing)[0]} to check")
    token_lists = [onnx_model.tokenizer.encode(onnx_model.format_prompt(p)).tolist() for p in prompts]
    base = load_causal_lm(reference).eval()
    report = ParityReport(prompts=len(prompts))
    for name, peft_dir in [(BASE, None), *sorted((adapters or {}).items())]:
        torch_model = base
        if peft_dir is not None:
            from peft import PeftModel

            torch_model = PeftModel.from_pretrained(base, str(peft_dir)).eval()
        diffs, agree = [], 0
        for ids in token_lists:
            with torch.no_grad():
                expected = torch_model(torch.tensor([ids])).logits[0, -1].float().numpy()
            try:
                actual = onnx_model.next_token_logits(ids, adapter=name)
            except Exception as exc:
                raise OlivepressError(f"the ONNX model fails to run with adapter '{name}': {exc}") from exc
            diffs.append(np.abs(actual - expected))
            agree += int(actual.argmax() == expected.argmax())
        sample = onnx_model.generate(prompts[0], SearchOptions(max_new_tokens=sample_tokens), adapter=name).text
        stacked = np.concatenate(diffs)
        report.variants.append(VariantParity(
            adapter=name, max_abs_diff=float(stacked.max()), mean_abs_diff=float(stacked.mean()),
            top1_agreement=agree / len(token_lists), sample=sample,
        ))
        if peft_dir is not None:
            base = torch_model.unload()  # take the adapter off again for the next variant
    return report


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


def check_onnx_parity(onnx_dir: Path, reference: HfModel, texts: tuple[str, ...] = DEFAULT_PROMPTS) -> OnnxParity:
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
        feeds[value.name] = (array if array is not None else np.zeros_like(encoded["input_ids"])).astype(np.int64)
    try:
        actual = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
    except Exception as exc:
        raise OlivepressError(f"the ONNX model in {onnx_dir} fails to run: {exc}") from exc
    with torch.no_grad():
        output = load_for_task(reference, task)(**{name: torch.from_numpy(array) for name, array in feeds.items()})
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
        task=task, provider=session.get_providers()[0], max_abs_diff=max(diffs),
        min_cosine=min(cosines), mean_cosine=float(np.mean(cosines)),
    )

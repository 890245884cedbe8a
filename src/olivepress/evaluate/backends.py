"""The runtimes a metric measures a model on: PyTorch (HF), an ONNX Runtime session, ORT GenAI.

Each backend loads the model once and offers what the metrics need:

- `prefill_decode(ids, n)`: run a prompt, then n decode steps; (prefill s, decode s). LLMs only.
- `forward_batch()`: one forward pass on a batch of dummy inputs (non-LLMs).
- `logits(ids)`: next-token logits for every position of a sequence (perplexity).
- `generate(prompt, n)`: greedy text (accuracy).
- `logits_batch(rows)`, `greedy_tokens(ids, n, done)`, `context_length`: what the lm-eval
  harness asks of a model (evaluate/harness_model.py).

Decode steps never stop at an end-of-sequence token, so every run does the same work and
timings compare across models.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel, ModelHandle, OnnxModel

BACKENDS = ("pytorch", "onnxruntime", "ort-genai")

StopWhen = Callable[[list[int]], bool]  # the tokens generated so far -> stop now?


def backend_name(model: ModelHandle, wanted: str = "auto") -> str:
    """The backend `wanted` means for `model` ('auto': the model's natural runtime)."""
    if wanted == "auto":
        if isinstance(model, HfModel):
            return "pytorch"
        return "ort-genai" if model.is_genai else "onnxruntime"
    if wanted == "pytorch" and not isinstance(model, HfModel):
        raise OlivepressError(
            f"backend pytorch runs Hugging Face models, and {model.path} is ONNX; use backend auto"
        )
    if wanted in ("onnxruntime", "ort-genai") and isinstance(model, HfModel):
        raise OlivepressError(
            f"backend {wanted} runs ONNX models, and {model.path} is a Hugging Face model; use backend auto"
        )
    if wanted == "ort-genai" and not model.is_genai:
        raise OlivepressError(
            f"backend ort-genai needs genai_config.json, which {model.path} lacks; use backend onnxruntime"
        )
    return wanted


def open_backend(model: ModelHandle, name: str, execution_provider: str = "CPUExecutionProvider") -> Backend:
    if name == "pytorch":
        return TorchBackend(model)  # type: ignore[arg-type]
    if name == "ort-genai":
        return GenAIBackend(model)  # type: ignore[arg-type]
    return SessionBackend(model, execution_provider)  # type: ignore[arg-type]


class Backend:
    name = ""
    is_llm = True

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def prefill_decode(self, ids: list[int], decode_tokens: int) -> tuple[float, float]:
        raise OlivepressError(f"the {self.name} backend cannot time generation for this model")

    def forward_batch(self, batch_size: int, seq_len: int) -> None:
        raise OlivepressError(f"the {self.name} backend cannot time a forward pass of this model")

    def logits(self, ids: list[int]) -> np.ndarray:
        raise OlivepressError(
            f"the {self.name} backend gives no logits for perplexity; use backend onnxruntime or pytorch"
        )

    def generate(self, prompt: str, max_new_tokens: int, use_chat_template: bool) -> str:
        raise OlivepressError(f"the {self.name} backend cannot generate text for accuracy")

    @property
    def context_length(self) -> int | None:
        """Most tokens the model takes, where the model says."""
        return None

    def logits_batch(self, rows: list[list[int]]) -> np.ndarray:
        """Next-token logits [len(rows), longest row, vocab] for rows of token ids. Rows are padded
        on the right: a causal model's logits at a real token never see the padding after it."""
        return _stacked([self.logits(row) for row in rows])

    def greedy_tokens(self, ids: list[int], max_new_tokens: int, done: StopWhen) -> list[int]:
        """Greedy continuation of `ids`: up to `max_new_tokens` ids, stopping early once `done(tokens)`."""
        tokens: list[int] = []
        for _ in range(max_new_tokens):
            tokens.append(int(self.logits(ids + tokens)[-1].argmax()))
            if done(tokens):
                break
        return tokens


def hf_tokenizer(folder: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise OlivepressError(
            f"no tokenizer could be loaded from {folder} ({type(exc).__name__}); copy the tokenizer "
            "files beside the model"
        ) from exc


class TorchBackend(Backend):
    name = "pytorch"

    def __init__(self, model: HfModel):
        import torch

        from olivepress.models.loading import load_causal_lm, load_tokenizer

        self.tokenizer = load_tokenizer(model)
        self.is_llm = model.task == "text-generation"
        if self.is_llm:
            self.model = load_causal_lm(model, dtype=torch.float32)
            if model.adapter_path:
                from peft import PeftModel

                self.model = PeftModel.from_pretrained(self.model, model.adapter_path)
        else:
            from transformers import AutoModel

            self.model = AutoModel.from_pretrained(model.path, **model.load_kwargs)
        self.model.eval()

    def prefill_decode(self, ids: list[int], decode_tokens: int) -> tuple[float, float]:
        import torch

        if not self.is_llm:
            return super().prefill_decode(ids, decode_tokens)
        with torch.no_grad():
            started = time.perf_counter()
            out = self.model(input_ids=torch.tensor([ids]), use_cache=True)
            prefill = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(decode_tokens):
                token = out.logits[:, -1:].argmax(-1)
                out = self.model(input_ids=token, past_key_values=out.past_key_values, use_cache=True)
            return prefill, time.perf_counter() - started

    def forward_batch(self, batch_size: int, seq_len: int) -> None:
        import torch

        ids = torch.randint(3, min(self.tokenizer.vocab_size, 1000), (batch_size, seq_len))
        with torch.no_grad():
            self.model(input_ids=ids, attention_mask=torch.ones_like(ids))

    def logits(self, ids: list[int]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float().numpy()

    @property
    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def logits_batch(self, rows: list[list[int]]) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.model(input_ids=torch.tensor(_right_padded(rows)), use_cache=False)
        return out.logits.float().numpy()

    def greedy_tokens(self, ids: list[int], max_new_tokens: int, done: StopWhen) -> list[int]:
        import torch

        tokens: list[int] = []
        with torch.no_grad():
            out = self.model(input_ids=torch.tensor([ids]), use_cache=True)
            for _ in range(max_new_tokens):
                tokens.append(int(out.logits[0, -1].argmax()))
                if done(tokens) or len(tokens) == max_new_tokens:
                    break
                step = torch.tensor([tokens[-1:]])
                out = self.model(input_ids=step, past_key_values=out.past_key_values, use_cache=True)
        return tokens

    def generate(self, prompt: str, max_new_tokens: int, use_chat_template: bool) -> str:
        import torch

        if use_chat_template and getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, return_dict=False
            )
            ids = list(ids["input_ids"] if isinstance(ids, dict) else ids)
        else:
            ids = self.encode(prompt)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        return self.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)


class SessionBackend(Backend):
    """An ONNX Runtime session on the folder's model (for an ORT GenAI folder: its decoder,
    fed empty past key/values, which gives full-sequence logits)."""

    name = "onnxruntime"

    def __init__(self, model: OnnxModel, execution_provider: str = "CPUExecutionProvider"):
        import onnxruntime as ort

        self.folder = model.folder
        path = _onnx_path(model)
        available = ort.get_available_providers()
        providers = [execution_provider] if execution_provider in available else ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.past_names = [name for name in self.inputs if name.startswith("past_key_values")]
        self.head_size = _head_size(model) if self.past_names else None
        self.is_llm = bool(self.past_names) or "logits" in self.output_names
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = hf_tokenizer(self.folder)
        return self._tokenizer

    def _feed(self, ids: np.ndarray, past: dict[str, np.ndarray] | None, total: int) -> dict[str, np.ndarray]:
        batch, seq = ids.shape
        feed: dict[str, np.ndarray] = {}
        for name, meta in self.inputs.items():
            dtype = _numpy_type(meta.type)
            if name == "input_ids":
                feed[name] = ids.astype(dtype)
            elif name == "attention_mask":
                feed[name] = np.ones((batch, total), dtype=dtype)
            elif name == "position_ids":
                feed[name] = np.tile(np.arange(total - seq, total, dtype=dtype), (batch, 1))
            elif name == "token_type_ids":
                feed[name] = np.zeros((batch, seq), dtype=dtype)
            elif name in self.past_names:
                feed[name] = (
                    past[name] if past else np.zeros(self._past_shape(meta.shape, batch), dtype=dtype)
                )
            else:
                raise OlivepressError(
                    f"{self.folder}: the model has an input '{name}' olivepress cannot fill for evaluation"
                )
        return feed

    def _past_shape(self, shape: list[Any], batch: int) -> list[int]:
        """[batch, kv heads, past length, head size] of an empty past, from the input's symbolic shape."""
        dims = []
        for dim in shape:
            if isinstance(dim, int):
                dims.append(dim)
            elif "batch" in dim:
                dims.append(batch)
            elif "sequence" in dim or "past" in dim:
                dims.append(0)
            elif self.head_size is not None:
                dims.append(self.head_size)
            else:
                raise OlivepressError(
                    f"{self.folder}: cannot tell the size of past key/value dimension '{dim}'; "
                    "evaluate it as an ORT GenAI folder"
                )
        return dims

    def _run(
        self, ids: np.ndarray, past: dict[str, np.ndarray] | None = None, total: int | None = None
    ) -> dict[str, np.ndarray]:
        total = total or ids.shape[1]
        outputs = self.session.run(None, self._feed(ids, past, total))
        return dict(zip(self.output_names, outputs, strict=True))

    def prefill_decode(self, ids: list[int], decode_tokens: int) -> tuple[float, float]:
        if not self.past_names:
            return super().prefill_decode(ids, decode_tokens)
        started = time.perf_counter()
        out = self._run(np.array([ids]))
        prefill = time.perf_counter() - started
        total = len(ids)
        started = time.perf_counter()
        for _ in range(decode_tokens):
            past = {name: out[name.replace("past_key_values", "present")] for name in self.past_names}
            token = out["logits"][:, -1:].argmax(-1)
            total += 1
            out = self._run(token, past, total)
        return prefill, time.perf_counter() - started

    def forward_batch(self, batch_size: int, seq_len: int) -> None:
        self._run(np.random.default_rng(0).integers(3, 100, (batch_size, seq_len)))

    def logits(self, ids: list[int]) -> np.ndarray:
        if "logits" not in self.output_names:
            return super().logits(ids)
        return self._run(np.array([ids]))["logits"][0].astype(np.float32)

    @property
    def context_length(self) -> int | None:
        for name, key in (
            ("genai_config.json", "context_length"),
            ("config.json", "max_position_embeddings"),
        ):
            file = self.folder / name
            if file.is_file():
                config = json.loads(file.read_text())
                value = config.get("model", config).get(key)
                if value:
                    return int(value)
        return None

    def logits_batch(self, rows: list[list[int]]) -> np.ndarray:
        if "logits" not in self.output_names:
            return super().logits_batch(rows)
        return self._run(np.array(_right_padded(rows)))["logits"].astype(np.float32)

    def greedy_tokens(self, ids: list[int], max_new_tokens: int, done: StopWhen) -> list[int]:
        if not self.past_names:  # a graph without a KV cache: each step reruns the whole sequence
            return super().greedy_tokens(ids, max_new_tokens, done)
        tokens: list[int] = []
        out, total = self._run(np.array([ids])), len(ids)
        for _ in range(max_new_tokens):
            tokens.append(int(out["logits"][0, -1].argmax()))
            if done(tokens) or len(tokens) == max_new_tokens:
                break
            past = {name: out[name.replace("past_key_values", "present")] for name in self.past_names}
            total += 1
            out = self._run(np.array([tokens[-1:]]), past, total)
        return tokens


class GenAIBackend(Backend):
    name = "ort-genai"

    def __init__(self, model: OnnxModel):
        from olivepress.runtime.generate import GenAIModel

        self.handle = model
        self.genai = GenAIModel(model.path, adapters=model.adapters or None)
        self._session: SessionBackend | None = None
        self._tokenizer = None

    @property
    def tokenizer(self):
        """The Hugging Face tokenizer beside the model (the harness tokenizes with it, so every
        backend scores the same token ids)."""
        if self._tokenizer is None:
            self._tokenizer = hf_tokenizer(self.genai.folder)
        return self._tokenizer

    @property
    def context_length(self) -> int | None:
        return self.genai.context_length

    def logits_batch(self, rows: list[list[int]]) -> np.ndarray:
        # ORT GenAI's own runtime, one sequence at a time (its generator takes no padded batch).
        return _stacked([self.genai.logits(row) for row in rows])

    def greedy_tokens(self, ids: list[int], max_new_tokens: int, done: StopWhen) -> list[int]:
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.genai.model)
        length = min(len(ids) + max_new_tokens, self.genai.context_length)
        params.set_search_options(max_length=length, do_sample=False)
        generator = og.Generator(self.genai.model, params)
        generator.append_tokens(ids)
        tokens: list[int] = []
        while not generator.is_done():
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
            if done(tokens):
                break
        return tokens

    def encode(self, text: str) -> list[int]:
        return self.genai.encode(text)

    def prefill_decode(self, ids: list[int], decode_tokens: int) -> tuple[float, float]:
        generator = self.genai.forced_generator(len(ids), decode_tokens)
        started = time.perf_counter()
        generator.append_tokens(ids)
        prefill = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(decode_tokens):
            generator.generate_next_token()
        return prefill, time.perf_counter() - started

    def logits(self, ids: list[int]) -> np.ndarray:
        # ORT GenAI hands out only the last position's logits; the decoder run directly with an
        # empty past gives all of them.
        if self._session is None:
            self._session = SessionBackend(self.handle)
        return self._session.logits(ids)

    def generate(self, prompt: str, max_new_tokens: int, use_chat_template: bool) -> str:
        from olivepress.runtime.generate import SearchOptions

        return self.genai.generate(
            prompt, SearchOptions(max_new_tokens=max_new_tokens), use_chat_template=use_chat_template
        ).text


def _right_padded(rows: list[list[int]], pad_id: int = 0) -> list[list[int]]:
    longest = max(len(row) for row in rows)
    return [row + [pad_id] * (longest - len(row)) for row in rows]


def _stacked(per_row: list[np.ndarray]) -> np.ndarray:
    """[len, vocab] logits of rows of different lengths as one right-padded array."""
    out = np.zeros((len(per_row), max(len(rows) for rows in per_row), per_row[0].shape[-1]), dtype=np.float32)
    for index, logits in enumerate(per_row):
        out[index, : len(logits)] = logits
    return out


def _onnx_path(model: OnnxModel) -> Path:
    folder = model.folder
    if model.is_genai:
        config = json.loads((folder / "genai_config.json").read_text())
        return folder / config["model"]["decoder"]["filename"]
    files = sorted(folder.glob("*.onnx"))
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise OlivepressError(f"{folder} must hold one .onnx file to evaluate (found: {found})")
    return files[0]


def _numpy_type(onnx_type: str) -> Any:
    return {
        "tensor(int64)": np.int64,
        "tensor(int32)": np.int32,
        "tensor(float)": np.float32,
        "tensor(float16)": np.float16,
        "tensor(bool)": np.bool_,
    }.get(onnx_type, np.float32)


def _head_size(model: OnnxModel) -> int | None:
    config = model.folder / "genai_config.json"
    if config.is_file():
        return json.loads(config.read_text())["model"]["decoder"].get("head_size")
    return None

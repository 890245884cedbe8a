"""Text generation on ONNX Runtime GenAI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olivepress.errors import OlivepressError


@dataclass
class SearchOptions:
    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None

    def check(self) -> None:
        if self.max_new_tokens < 1:
            raise OlivepressError(f"max_new_tokens must be at least 1 (got {self.max_new_tokens})")
        if self.temperature is not None and self.temperature <= 0:
            raise OlivepressError(
                f"temperature must be above 0 (got {self.temperature}); use greedy search instead of 0"
            )


@dataclass
class Generation:
    prompt: str
    text: str
    new_tokens: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


def genai_folder(path: str | Path) -> Path:
    """The ORT GenAI folder in `path`: the folder itself, or the `model/` of an olivepress output."""
    folder = Path(path).expanduser()
    for candidate in (folder, folder / "model"):
        if (candidate / "genai_config.json").is_file():
            return candidate
    if not folder.exists():
        raise OlivepressError(
            f"model folder {folder} does not exist; pass an ORT GenAI folder (with genai_config.json)"
        )
    raise OlivepressError(
        f"{folder} is not an ORT GenAI model: no genai_config.json in it or in its model/ folder; "
        "build one with a ModelBuilder pass"
    )


BASE = "base"  # the name that means "no adapter active"


class GenAIModel:
    """An ORT GenAI model, its tokenizer and its LoRA adapters, loaded once for many generations.

    Adapters come from the model folder's adapters.json (written by ExtractAdapters) and from
    `adapters` (name -> .onnx_adapter file); any of them can be active per generation.
    """

    def __init__(self, path: str | Path, adapters: dict[str, str | Path] | None = None):
        import onnxruntime_genai as og

        from olivepress.runtime.adapters import (
            check_switch_flag,
            has_lora_switch,
            model_file,
            registered_adapters,
        )
        from olivepress.runtime.leading_bos import leading_bos

        self.folder = genai_folder(path)
        try:
            self.model = og.Model(str(self.folder))
        except Exception as exc:
            raise OlivepressError(f"ONNX Runtime GenAI cannot load {self.folder}: {exc}") from exc
        self.tokenizer = og.Tokenizer(self.model)
        bos = leading_bos(self.folder)
        self._bos_id = int(self.tokenizer.to_token_id(bos)) if bos else None
        self._has_chat_template = _has_chat_template(self.folder)
        self.adapter_files = {
            **registered_adapters(self.folder),
            **{k: Path(v) for k, v in (adapters or {}).items()},
        }
        self._adapters = None
        if self.adapter_files:
            self._adapters = og.Adapters(self.model)
            switched = has_lora_switch(model_file(self.folder))
            for name, file in self.adapter_files.items():
                if name == BASE:
                    raise OlivepressError(
                        f"'{BASE}' names the model without an adapter; give the adapter another name"
                    )
                if not file.is_file():
                    raise OlivepressError(
                        f"adapter file {file} does not exist; convert one with olivepress convert-adapters"
                    )
                check_switch_flag(file, self.folder, switched)
                try:
                    self._adapters.load(str(file), name)
                except Exception as exc:
                    raise OlivepressError(
                        f"adapter {name} ({file}) does not fit {self.folder}: {exc}"
                    ) from exc

    @property
    def adapter_names(self) -> list[str]:
        return list(self.adapter_files)

    def _generator(self, params, adapter: str | None):
        import onnxruntime_genai as og

        generator = og.Generator(self.model, params)
        if adapter and adapter != BASE:
            if adapter not in self.adapter_files:
                known = ", ".join(self.adapter_names) or "none"
                raise OlivepressError(
                    f"no adapter named '{adapter}' (loaded: {known}); add it with --adapter {adapter}=FILE"
                )
            generator.set_active_adapter(self._adapters, adapter)
        return generator

    def new_generator(self, prompt_length: int, options: SearchOptions, adapter: str | None = None):
        """A fresh og.Generator for one prompt with `options`, `adapter` switched on (the
        server runs one per request, so requests for different adapters never share state)."""
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        search: dict[str, Any] = {
            "max_length": self.cache_length(prompt_length + options.max_new_tokens),
            "do_sample": options.do_sample,
        }
        for key in ("temperature", "top_p", "top_k"):
            if getattr(options, key) is not None:
                search[key] = getattr(options, key)
        if options.seed is not None:
            search["random_seed"] = options.seed
        params.set_search_options(**search)
        return self._generator(params, adapter)

    def forced_generator(self, prompt_length: int, new_tokens: int, adapter: str | None = None):
        """A greedy generator that does not stop before `new_tokens` after the prompt (timing
        runs, which then call generate_next_token that many times themselves)."""
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        total = prompt_length + new_tokens
        params.set_search_options(max_length=self.cache_length(total), min_length=total, do_sample=False)
        return self._generator(params, adapter)

    @property
    def context_length(self) -> int:
        """Most tokens (prompt + generated) the model takes."""
        return int(json.loads((self.folder / "genai_config.json").read_text())["model"]["context_length"])

    def cache_length(self, tokens: int) -> int:
        """The max_length to give a generator for `tokens`: at least the sliding window where the
        model keeps windowed key/value caches (their attention refuses a smaller cache), within
        the context length."""
        decoder = json.loads((self.folder / "genai_config.json").read_text())["model"]["decoder"]
        window = (decoder.get("sliding_window") or {}).get("window_size") or 0
        return min(max(tokens, window), self.context_length) if window else tokens

    def logits(self, token_ids: list[int], adapter: str | None = None):
        """Logits [len(token_ids), vocab] after each of `token_ids` (teacher-forced, one run)."""
        import numpy as np
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=self.cache_length(len(token_ids) + 1))
        generator = self._generator(params, adapter)
        generator.append_tokens(token_ids)
        return np.array(generator.get_output("logits"), dtype=np.float32).reshape(-1, self.vocab_size)

    def next_token_logits(self, token_ids: list[int], adapter: str | None = None):
        """Logits for the token after `token_ids` (a numpy vector), for parity checks."""
        return self.logits(token_ids, adapter)[-1]

    @property
    def vocab_size(self) -> int:
        return json.loads((self.folder / "genai_config.json").read_text())["model"]["vocab_size"]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` as the model saw text in training: with the leading BOS its
        tokenizer adds (ORT GenAI's tokenizer adds none), unless the text already starts with it
        (a chat template that writes it)."""
        ids = [int(token) for token in self.tokenizer.encode(text)]
        if self._bos_id is not None and ids[:1] != [self._bos_id]:
            ids.insert(0, self._bos_id)
        return ids

    def format_prompt(self, prompt: str | list[dict[str, str]], use_chat_template: bool = True) -> str:
        """A prompt (or a conversation: a list of {role, content}) in the model's chat template."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        if not (use_chat_template and self._has_chat_template):
            return "\n".join(message["content"] for message in messages)
        return self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)

    def generate(
        self,
        prompt: str | list[dict[str, str]],
        options: SearchOptions | None = None,
        *,
        use_chat_template: bool = True,
        on_text: Callable[[str], None] | None = None,
        adapter: str | None = None,
    ) -> Generation:
        options = options or SearchOptions()
        options.check()
        input_ids = self.encode(self.format_prompt(prompt, use_chat_template))
        generator = self.new_generator(len(input_ids), options, adapter)
        stream = self.tokenizer.create_stream()
        started = time.perf_counter()
        generator.append_tokens(input_ids)
        tokens: list[int] = []
        # max_length may exceed the wanted length (cache_length), so the count bounds the loop too
        while not generator.is_done() and len(tokens) < options.max_new_tokens:
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            tokens.append(token)
            if on_text is not None:
                on_text(stream.decode(token))
        seconds = time.perf_counter() - started
        text = self.tokenizer.decode(tokens)
        shown = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        return Generation(
            prompt=shown,
            text=text,
            new_tokens=len(tokens),
            seconds=seconds,
            extra={"adapter": adapter or BASE},
        )


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file():
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and "chat_template" in json.loads(config.read_text())

"""lm-eval's model interface over an olivepress backend (PyTorch, ONNX Runtime, ORT GenAI).

The harness asks three things of a model: the log-likelihood of a continuation after a context
(multiple-choice tasks score each choice this way), the log-likelihood of a whole text in
windows (perplexity tasks), and greedy text until a stop string (generation tasks). All three
are built on two backend primitives, `logits_batch` and `greedy_tokens`, and one Hugging Face
tokenizer, so every backend scores the same token ids and their scores compare.

A continuation is scored as in the harness's own Hugging Face model: context and continuation
are encoded together, the sequence is cut from the left to `max_length`, and

    loglikelihood = Σ log softmax(logits[t - 1])[token t]   over the continuation's tokens t
    is_greedy     = every continuation token is the argmax at its position
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM

from olivepress.evaluate.backends import Backend

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance

log = logging.getLogger("olivepress")

DEFAULT_MAX_LENGTH = 2048
DEFAULT_MAX_GEN_TOKS = 256

Request = tuple[Any, list[int], list[int]]  # (cache key, context ids, continuation ids)


class BackendLM(TemplateLM):
    """An lm-eval `LM` whose forward passes run on `backend`."""

    def __init__(
        self,
        backend: Backend,
        *,
        batch_size: int = 1,
        max_length: int | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
    ):
        super().__init__()
        self.backend = backend
        self.tokenizer = backend.tokenizer
        self.batch_size = batch_size
        self.max_length = max_length or backend.context_length or DEFAULT_MAX_LENGTH
        self.max_gen_toks = max_gen_toks

    # -- tokens -----------------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        eos = self.tokenizer.eos_token_id
        return int(eos) if eos is not None else 0

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return int(bos) if bos is not None else self.eot_token_id

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "")).replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        # Like the harness's HF model on a causal LM: no special tokens unless asked for.
        return list(self.tokenizer.encode(string, add_special_tokens=bool(add_special_tokens)))

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    # -- log-likelihoods ----------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False, **kwargs: Any):
        # Longest first, so a batch pads little; answers go back in the order asked.
        # An empty continuation has log-likelihood 0 and is trivially greedy.
        results: list[tuple[float, bool]] = [(0.0, True)] * len(requests)
        scoring = [i for i in range(len(requests)) if requests[i][2]]
        order = sorted(scoring, key=lambda i: -(len(requests[i][1]) + len(requests[i][2])))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            rows, spans = [], []
            for index in chunk:
                _, context, continuation = requests[index]
                whole = (context + continuation)[-(self.max_length + 1) :]
                scored = min(len(continuation), len(whole) - 1)
                # The model reads every token but the last; logits at t - 1 score token t.
                rows.append(whole[:-1])
                spans.append((len(whole) - 1 - scored, whole[-scored:]))
            logits = self.backend.logits_batch(rows)
            for row_logits, index, (begin, targets) in zip(logits, chunk, spans, strict=True):
                results[index] = _score(row_logits[begin : begin + len(targets)], targets)
                key = requests[index][0]
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, results[index])
        return results

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        totals = []
        for (text,) in [request.args for request in requests]:
            windows = [
                (None, *window)
                for window in map(
                    lm_utils.make_disjoint_window,
                    lm_utils.get_rolling_token_windows(
                        token_list=self.tok_encode(text),
                        prefix_token=self.prefix_token_id,
                        max_seq_len=self.max_length,
                        context_len=1,
                    ),
                )
            ]
            total = sum(score for score, _ in self._loglikelihood_tokens(windows))
            totals.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return totals

    # -- generation ---------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        answers = []
        for context, gen_kwargs in [request.args for request in requests]:
            kwargs = dict(gen_kwargs)
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            if kwargs.get("do_sample"):
                log.debug("lm-eval asked for sampling; olivepress generates greedily so scores repeat")
            prompt = self.tok_encode(context)[-max(self.max_length - max_new, 1) :]
            stop_ids = {self.eot_token_id}

            def done(tokens: list[int], until: list[str] = until, stop_ids: set[int] = stop_ids) -> bool:
                return tokens[-1] in stop_ids or any(stop in self.tok_decode(tokens) for stop in until)

            text = self.tok_decode(self.backend.greedy_tokens(prompt, max_new, done))
            for stop in until:
                text = text.split(stop)[0]
            answers.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return answers


def _score(logits: np.ndarray, targets: list[int]) -> tuple[float, bool]:
    """(Σ log p(target), every target is the argmax) for rows of next-token logits."""
    logits = logits.astype(np.float64)
    top = logits.max(axis=-1, keepdims=True)
    log_probs = logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
    picked = log_probs[np.arange(len(targets)), targets]
    return float(picked.sum()), bool((log_probs.argmax(axis=-1) == np.asarray(targets)).all())

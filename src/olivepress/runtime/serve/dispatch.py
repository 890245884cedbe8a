"""The request dispatcher: a request's model id to its adapter, its prompt to token ids, and
its generation to a worker thread (through the batcher for greedy requests), with text
released as it becomes final and stop strings applied."""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any

from olivepress.errors import OlivepressError
from olivepress.runtime.batching import BatchedDecoder, has_windowed_cache, runs_on_cpu
from olivepress.runtime.generate import BASE, GenAIModel, SearchOptions
from olivepress.runtime.serve.wire import ApiError, ChatCompletionRequest, CompletionRequest, Finished

log = logging.getLogger("olivepress")

DEFAULT_MAX_TOKENS = 256  # when a request names none: OpenAI's chat API has no fixed default either


class Server:
    """The model, its ids, and the worker threads that run generations."""

    def __init__(
        self,
        model: GenAIModel,
        *,
        base_id: str,
        api_key: str | None = None,
        parallel: int = 8,
        batching: bool = True,
    ):
        if parallel < 1:
            raise OlivepressError(f"--parallel must be at least 1 (got {parallel})")
        if base_id in model.adapter_names:
            raise OlivepressError(
                f"an adapter is named '{base_id}', like the base model; "
                "give the base model another id with --served_model_name"
            )
        self.model = model
        self.base_id = base_id
        self.api_key = api_key
        self.parallel = parallel
        self.executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="olivepress-gen")
        if batching and not runs_on_cpu(model.folder):
            log.info(
                "The model runs on a GPU provider: one ORT GenAI generator per request "
                "(the batcher is CPU-only)"
            )
            batching = False
        if batching and has_windowed_cache(model.folder):
            log.info("The model has sliding-window layers: one ORT GenAI generator per request")
            batching = False
        self.batcher = (
            BatchedDecoder(model.folder, model.adapter_files, max_batch=parallel) if batching else None
        )
        self.created = int(time.time())
        self.context_length = model.context_length
        self.in_flight = 0  # requests generating or queued for a worker
        self.served = 0

    @property
    def model_ids(self) -> list[str]:
        return [self.base_id, *self.model.adapter_names]

    def adapter_for(self, model_id: str) -> str:
        if model_id in (self.base_id, BASE):
            return BASE
        if model_id in self.model.adapter_names:
            return model_id
        raise ApiError(
            404,
            f"The model '{model_id}' does not exist; this server has: {', '.join(self.model_ids)}",
            code="model_not_found",
            param="model",
        )

    def check_key(self, authorization: str | None) -> None:
        if self.api_key is None:
            return
        if not authorization:
            raise ApiError(
                401,
                "Missing API key: send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
                kind="authentication_error",
            )
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), self.api_key.encode()):
            raise ApiError(
                401, "Incorrect API key provided", code="invalid_api_key", kind="authentication_error"
            )

    def prepare(
        self,
        prompt: str | list[dict[str, str]],
        request: ChatCompletionRequest | CompletionRequest,
        chat: bool,
    ) -> tuple[list[int], SearchOptions]:
        """Token ids and search options for a request, checked against the context length."""
        try:
            text = self.model.format_prompt(prompt, use_chat_template=chat)
        except Exception as exc:
            raise ApiError(
                400, f"the messages do not fit the model's chat template: {exc}", param="messages"
            ) from exc
        ids = self.model.encode(text)
        context = self.context_length
        wanted = request.max_new_tokens
        room = context - len(ids)
        if room < 1 or (wanted is not None and wanted > room):
            asked = wanted or 1
            raise ApiError(
                400,
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{len(ids) + asked} tokens ({len(ids)} in the prompt, {asked} for the completion). "
                "Please reduce the prompt or max_tokens.",
                code="context_length_exceeded",
                param="messages" if chat else "prompt",
            )
        options = SearchOptions(
            max_new_tokens=wanted or min(DEFAULT_MAX_TOKENS, room),
            do_sample=request.do_sample,
            temperature=request.temperature if request.do_sample and request.temperature else None,
            top_p=request.top_p,
            top_k=request.top_k,
            seed=request.seed,
        )
        return ids, options

    def generate(
        self,
        ids: list[int],
        options: SearchOptions,
        adapter: str,
        stops: list[str],
        emit: Callable[[str], None] | None,
        cancelled: threading.Event,
    ) -> Finished:
        """One generation on the calling (worker) thread; `emit` gets text as it becomes final."""
        tokens: list[int] = []
        text, sent, stopped = "", 0, False
        # Text that could be the start of a stop string is held back until it is not.
        holdback = max((len(stop) for stop in stops), default=1) - 1
        with closing(self._token_ids(ids, options, adapter, cancelled)) as token_ids:
            for token in token_ids:
                tokens.append(token)
                # Decoding the whole answer each step (not a token stream) keeps the streamed text
                # byte-identical to the non-streamed one and to `olivepress generate`.
                text = self.model.tokenizer.decode(tokens)
                cut = _first_stop(text, stops, start=max(0, sent - holdback))
                if cut is not None:
                    text, stopped = text[:cut], True
                    break
                ready = len(text.rstrip("\ufffd")) - holdback  # a character cut in half may still change
                if emit is not None and ready > sent:
                    emit(text[sent:ready])
                    sent = ready
        if cancelled.is_set() and not stopped:
            return Finished(text, len(ids), len(tokens), "cancelled")
        if emit is not None and len(text) > sent:
            emit(text[sent:])
        reason = "stop" if stopped or len(tokens) < options.max_new_tokens else "length"
        return Finished(text, len(ids), len(tokens), reason)

    def _token_ids(
        self, ids: list[int], options: SearchOptions, adapter: str, cancelled: threading.Event
    ) -> Iterator[int]:
        """The request's generated token ids: from the batcher for greedy search, else from a
        generator of its own. Stops early once `cancelled` is set."""
        if self.batcher is not None and not options.do_sample:
            yield from self.batcher.submit(ids, options.max_new_tokens, adapter, cancelled)
            return
        generator = self.model.new_generator(len(ids), options, adapter)
        generator.append_tokens(ids)
        for _ in range(options.max_new_tokens):  # max_length may exceed it (GenAIModel.cache_length)
            if generator.is_done() or cancelled.is_set():
                break
            generator.generate_next_token()
            yield int(generator.get_next_tokens()[0])

    def health(self) -> dict[str, Any]:
        """What /health reports: the model ids, the requests in hand and served, and the batcher's
        mean batch and prefix-cache share once it has seen work."""
        health: dict[str, Any] = {
            "status": "ok",
            "models": self.model_ids,
            "in_flight": self.in_flight,
            "served": self.served,
        }
        stats = self.batcher.stats() if self.batcher is not None else None
        if stats is not None and stats.mean_batch is not None:
            health["mean_batch"] = round(stats.mean_batch, 2)
        if stats is not None and stats.cached_prompt_fraction is not None:
            health["cached_prompt_fraction"] = round(stats.cached_prompt_fraction, 3)
        return health

    def close(self) -> None:
        """Finish the work in hand, then stop the worker threads and the batcher."""
        self.executor.shutdown(wait=True)
        if self.batcher is not None:
            self.batcher.close()

    async def run(self, ids: list[int], options: SearchOptions, adapter: str, stops: list[str]) -> Finished:
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()
        self.in_flight += 1
        try:
            return await loop.run_in_executor(
                self.executor, self.generate, ids, options, adapter, stops, None, cancelled
            )
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finally:
            self.in_flight -= 1
            self.served += 1

    async def run_streaming(
        self, ids: list[int], options: SearchOptions, adapter: str, stops: list[str]
    ) -> AsyncIterator[str | Finished]:
        """Text pieces as they are generated, then the Finished record."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(piece: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        self.in_flight += 1
        future = loop.run_in_executor(
            self.executor, self.generate, ids, options, adapter, stops, emit, cancelled
        )
        try:
            while not (future.done() and queue.empty()):
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, future}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            yield await future
        finally:
            # The client went away (or the answer is complete): stop generating for nobody.
            cancelled.set()
            self.in_flight -= 1
            self.served += 1


def _first_stop(text: str, stops: list[str], start: int) -> int | None:
    found = [index for stop in stops if (index := text.find(stop, start)) >= 0]
    return min(found) if found else None

"""An OpenAI-compatible HTTP server for an ORT GenAI model and its LoRA adapters.

The request's ``model`` picks the adapter: the base model's id, or an adapter's name. Greedy
requests are decoded together, whatever adapter each asks for, by the continuous batcher
in runtime/batching.py (on ONNX Runtime, over the same model files): on a CPU that
serves several times the tokens/s of one generation at a time. Sampled requests (and all
requests with ``batching=False``) each get their own ``og.Generator`` with its adapter
switched on, on a worker thread: generators share the model's weights but nothing else.
Either way no request reads another's adapter, cache or tokens.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from olivepress.errors import OlivepressError
from olivepress.runtime.batching import BatchedDecoder, has_windowed_cache, runs_on_cpu
from olivepress.runtime.generate import BASE, GenAIModel, SearchOptions
from olivepress.runtime.serve_schemas import ChatCompletionRequest, CompletionRequest, error_body

log = logging.getLogger("olivepress")

DEFAULT_MAX_TOKENS = 256  # when a request names none: OpenAI's chat API has no fixed default either
MAX_BODY_BYTES = 8 << 20


class ApiError(Exception):
    """A request the server refuses, answered with an OpenAI-style error body."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind


@dataclass
class Finished:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of text or a stop string), "length" (max_tokens), "cancelled"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    """The model, its ids, and the worker threads that run generations."""

    def __init__(self, model: GenAIModel, *, base_id: str, api_key: str | None = None, parallel: int = 8,
                 batching: bool = True):
        if parallel < 1:
            raise OlivepressError(f"--parallel must be at least 1 (got {parallel})")
        if base_id in model.adapter_names:
            raise OlivepressError(f"an adapter is named '{base_id}', like the base model; give the base model another id with --served_model_name")
        self.model = model
        self.base_id = base_id
        self.api_key = api_key
        self.parallel = parallel
        self.executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="olivepress-gen")
        if batching and not runs_on_cpu(model.folder):
            log.info("The model runs on a GPU provider: one ORT GenAI generator per request (the batcher is CPU-only)")
            batching = False
        if batching and has_windowed_cache(model.folder):
            log.info("The model has sliding-window layers: one ORT GenAI generator per request")
            batching = False
        self.batcher = BatchedDecoder(model.folder, model.adapter_files, max_batch=parallel) if batching else None
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
        raise ApiError(404, f"The model '{model_id}' does not exist; this server has: {', '.join(self.model_ids)}",
                       code="model_not_found", param="model")

    def check_key(self, authorization: str | None) -> None:
        if self.api_key is None:
            return
        if not authorization:
            raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key",
                           kind="authentication_error")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), self.api_key.encode()):
            raise ApiError(401, "Incorrect API key provided", code="invalid_api_key", kind="authentication_error")

    def prepare(self, prompt: str | list[dict[str, str]], request: ChatCompletionRequest | CompletionRequest,
                chat: bool) -> tuple[list[int], SearchOptions]:
        """Token ids and search options for a request, checked against the context length."""
        try:
            text = self.model.format_prompt(prompt, use_chat_template=chat)
        except Exception as exc:
            raise ApiError(400, f"the messages do not fit the model's chat template: {exc}", param="messages") from exc
        ids = [int(token) for token in self.model.tokenizer.encode(text)]
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
                code="context_length_exceeded", param="messages" if chat else "prompt",
            )
        options = SearchOptions(
            max_new_tokens=wanted or min(DEFAULT_MAX_TOKENS, room), do_sample=request.do_sample,
            temperature=request.temperature if request.do_sample and request.temperature else None,
            top_p=request.top_p, top_k=request.top_k, seed=request.seed,
        )
        return ids, options

    def generate(self, ids: list[int], options: SearchOptions, adapter: str, stops: list[str],
                 emit: Callable[[str], None] | None, cancelled: threading.Event) -> Finished:
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

    def _token_ids(self, ids: list[int], options: SearchOptions, adapter: str,
                   cancelled: threading.Event) -> Iterator[int]:
        """The request's generated token ids: from the batcher for greedy search, else from a
        generator of its own. Stops early once `cancelled` is set."""
        if self.batcher is not None and not options.do_sample:
            yield from self.batcher.submit(ids, options.max_new_tokens, adapter, cancelled)
            return
        generator = self.model.new_generator(len(ids), options, adapter)
        generator.append_tokens(ids)
        while not generator.is_done() and not cancelled.is_set():
            generator.generate_next_token()
            yield int(generator.get_next_tokens()[0])

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
            return await loop.run_in_executor(self.executor, self.generate, ids, options, adapter, stops, None, cancelled)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finally:
            self.in_flight -= 1
            self.served += 1

    async def run_streaming(self, ids: list[int], options: SearchOptions, adapter: str,
                            stops: list[str]) -> AsyncIterator[str | Finished]:
        """Text pieces as they are generated, then the Finished record."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(piece: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        self.in_flight += 1
        future = loop.run_in_executor(self.executor, self.generate, ids, options, adapter, stops, emit, cancelled)
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


def create_app(server: Server):
    """The FastAPI application: OpenAI's /v1 endpoints plus /health."""
    app = FastAPI(title="olivepress", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, kind=exc.kind, code=exc.code, param=exc.param), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problem = exc.errors()[0]
        if problem.get("type") == "json_invalid":
            message = f"We could not parse the JSON body of your request: {problem.get('ctx', {}).get('error', 'invalid JSON')}"
            return JSONResponse(error_body(message, code="invalid_json"), status_code=400)
        where = [str(part) for part in problem.get("loc", ()) if part != "body"]
        message = f"{'.'.join(where) or 'body'}: {problem.get('msg', 'invalid value')}"
        return JSONResponse(error_body(message, param=".".join(where) or None, code=problem.get("type")), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind=kind), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse(error_body(f"{type(exc).__name__}: {exc}", kind="server_error"), status_code=500)

    app.add_middleware(_Gate, server=server)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        health = {"status": "ok", "models": server.model_ids, "in_flight": server.in_flight, "served": server.served}
        batcher = server.batcher
        if batcher is not None and batcher.steps:
            health["mean_batch"] = round(batcher.rows_stepped / batcher.steps, 2)
        if batcher is not None and batcher.prompt_tokens:
            health["cached_prompt_fraction"] = round(batcher.cached_prompt_tokens / batcher.prompt_tokens, 3)
        return health

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(server, model_id) for model_id in server.model_ids]}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str) -> dict[str, Any]:
        server.adapter_for(model_id)
        return _model_card(server, model_id)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest):
        adapter = server.adapter_for(body.model)
        try:
            conversation = body.conversation()
        except ValueError as exc:
            raise ApiError(400, str(exc), param="messages") from exc
        ids, options = await asyncio.to_thread(server.prepare, conversation, body, True)
        reply = _Reply("chatcmpl", "chat.completion", body.model)
        if body.stream:
            pieces = server.run_streaming(ids, options, adapter, body.stops)
            return StreamingResponse(reply.chat_events(pieces, _include_usage(body)), media_type="text/event-stream")
        done = await server.run(ids, options, adapter, body.stops)
        return reply.chat(done)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        adapter = server.adapter_for(body.model)
        ids, options = await asyncio.to_thread(server.prepare, body.text, body, False)
        reply = _Reply("cmpl", "text_completion", body.model, echo=body.text if body.echo else "")
        if body.stream:
            pieces = server.run_streaming(ids, options, adapter, body.stops)
            return StreamingResponse(reply.completion_events(pieces, _include_usage(body)), media_type="text/event-stream")
        done = await server.run(ids, options, adapter, body.stops)
        return reply.completion(done)

    return app


class _Gate:
    """Checks made before a /v1 request's body is read: the API key first (a stranger learns
    nothing about the API), then the body's size (a prompt bigger than any context is refused
    unread). Plain ASGI, so streamed answers pass through untouched."""

    def __init__(self, app, server: Server):
        self.app = app
        self.server = server

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
            refusal = None
            try:
                self.server.check_key(headers.get("authorization"))
                if int(headers.get("content-length") or 0) > MAX_BODY_BYTES:
                    raise ApiError(413, f"the request body is over {MAX_BODY_BYTES >> 20} MiB; send a shorter prompt",
                                   code="request_too_large")
            except ApiError as exc:
                refusal = JSONResponse(error_body(exc.message, kind=exc.kind, code=exc.code, param=exc.param), status_code=exc.status)
            except ValueError:
                refusal = JSONResponse(error_body("Content-Length is not a number"), status_code=400)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _model_card(server: Server, model_id: str) -> dict[str, Any]:
    card = {"id": model_id, "object": "model", "created": server.created, "owned_by": "olivepress"}
    if model_id != server.base_id:
        card["parent"] = server.base_id
    return card


def _include_usage(body: ChatCompletionRequest | CompletionRequest) -> bool:
    return bool((body.stream_options or {}).get("include_usage"))


def _usage(done: Finished) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def _sse(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


class _Reply:
    """Response bodies and stream chunks for one request, sharing its id and timestamp."""

    def __init__(self, prefix: str, kind: str, model: str, echo: str = ""):
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.kind = kind
        self.model = model
        self.created = int(time.time())
        self.echo = echo

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "system_fingerprint": None}

    def chat(self, done: Finished) -> dict[str, Any]:
        choice = {"index": 0, "message": {"role": "assistant", "content": done.text}, "finish_reason": done.finish_reason,
                  "logprobs": None}
        return {**self._head(self.kind), "choices": [choice], "usage": _usage(done)}

    def completion(self, done: Finished) -> dict[str, Any]:
        choice = {"index": 0, "text": self.echo + done.text, "finish_reason": done.finish_reason, "logprobs": None}
        return {**self._head(self.kind), "choices": [choice], "usage": _usage(done)}

    async def chat_events(self, pieces: AsyncIterator[str | Finished], include_usage: bool) -> AsyncIterator[str]:
        kind = "chat.completion.chunk"
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "logprobs": None}
        yield _sse({**self._head(kind), "choices": [first]})
        async for piece in pieces:
            if isinstance(piece, Finished):
                last = {"index": 0, "delta": {}, "finish_reason": piece.finish_reason, "logprobs": None}
                yield _sse({**self._head(kind), "choices": [last]})
                if include_usage:
                    yield _sse({**self._head(kind), "choices": [], "usage": _usage(piece)})
            elif piece:
                delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None, "logprobs": None}
                yield _sse({**self._head(kind), "choices": [delta]})
        yield _sse("[DONE]")

    async def completion_events(self, pieces: AsyncIterator[str | Finished], include_usage: bool) -> AsyncIterator[str]:
        if self.echo:
            yield _sse({**self._head(self.kind), "choices": [{"index": 0, "text": self.echo, "finish_reason": None, "logprobs": None}]})
        async for piece in pieces:
            if isinstance(piece, Finished):
                last = {"index": 0, "text": "", "finish_reason": piece.finish_reason, "logprobs": None}
                yield _sse({**self._head(self.kind), "choices": [last]})
                if include_usage:
                    yield _sse({**self._head(self.kind), "choices": [], "usage": _usage(piece)})
            elif piece:
                yield _sse({**self._head(self.kind), "choices": [{"index": 0, "text": piece, "finish_reason": None, "logprobs": None}]})
        yield _sse("[DONE]")


def http_server(server: Server, host: str = "127.0.0.1", port: int = 8000, *, shutdown_timeout: float = 30.0):
    """A uvicorn server for `server`; run() serves until SIGINT/SIGTERM or `should_exit`, and lets
    in-flight requests finish (up to `shutdown_timeout` s) before it returns."""
    import uvicorn

    if not is_loopback(host) and not server.api_key:
        raise OlivepressError(
            f"binding {host} makes the server reachable from other machines; set an API key with --api_key "
            "(or OLIVEPRESS_API_KEY), or bind 127.0.0.1"
        )
    config = uvicorn.Config(create_app(server), host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=shutdown_timeout, access_log=False)
    return uvicorn.Server(config)


def bound_port(http) -> int:
    """The port a started uvicorn server listens on (the real one when asked for port 0)."""
    return http.servers[0].sockets[0].getsockname()[1]


def check_port(host: str, port: int) -> None:
    """Fail with one line, before uvicorn logs its own complaint, when the port is taken."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OlivepressError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host") from None


def serve(server: Server, host: str = "127.0.0.1", port: int = 8000, *, shutdown_timeout: float = 30.0,
          on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests finish before it returns."""
    http = http_server(server, host, port, shutdown_timeout=shutdown_timeout)
    check_port(host, port)
    if on_ready is not None:
        startup = http.startup

        async def startup_then_report(sockets=None):
            # uvicorn has no "started" callback; its startup returns once the socket listens.
            await startup(sockets=sockets)
            if http.started:
                on_ready(bound_port(http))

        http.startup = startup_then_report
    try:
        http.run()
    except SystemExit:  # uvicorn exits when it cannot bind
        pass
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once in-flight requests are done: a clean stop
        pass
    finally:
        server.close()
    if not http.started:
        raise OlivepressError(f"could not listen on {host}:{port} (is the port in use?); choose another with --port")

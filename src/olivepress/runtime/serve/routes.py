"""The HTTP routes: OpenAI's /v1 endpoints and /health on FastAPI, the errors every client
gets in OpenAI's shape, and the gate a /v1 request passes before its body is read."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from olivepress.runtime.serve.dispatch import Server
from olivepress.runtime.serve.wire import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    Reply,
    error_body,
    include_usage,
)

log = logging.getLogger("olivepress")

MAX_BODY_BYTES = 8 << 20


def create_app(server: Server) -> FastAPI:
    """The FastAPI application: OpenAI's /v1 endpoints plus /health."""
    app = FastAPI(title="olivepress", docs_url=None, redoc_url=None, openapi_url=None)
    _add_error_handlers(app)
    app.add_middleware(_Gate, server=server)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return server.health()

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
        reply = Reply("chatcmpl", "chat.completion", body.model)
        return await _answer(server, body, conversation, adapter, reply, chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        adapter = server.adapter_for(body.model)
        reply = Reply("cmpl", "text_completion", body.model, echo=body.text if body.echo else "")
        return await _answer(server, body, body.text, adapter, reply, chat=False)

    return app


async def _answer(server, body, prompt, adapter, reply: Reply, *, chat: bool):
    """One request run to its answer: server-sent events when it asks to stream, else one body."""
    ids, options = await asyncio.to_thread(server.prepare, prompt, body, chat)
    if body.stream:
        pieces = server.run_streaming(ids, options, adapter, body.stops)
        events = reply.chat_events if chat else reply.completion_events
        return StreamingResponse(events(pieces, include_usage(body)), media_type="text/event-stream")
    done = await server.run(ids, options, adapter, body.stops)
    return reply.chat(done) if chat else reply.completion(done)


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure answers with OpenAI's error body, so clients raise their own error types."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problem = exc.errors()[0]
        if problem.get("type") == "json_invalid":
            reason = problem.get("ctx", {}).get("error", "invalid JSON")
            message = f"We could not parse the JSON body of your request: {reason}"
            return JSONResponse(error_body(message, code="invalid_json"), status_code=400)
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        message = f"{where or 'body'}: {problem.get('msg', 'invalid value')}"
        body = error_body(message, param=where or None, code=problem.get("type"))
        return JSONResponse(body, status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind=kind), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse(error_body(f"{type(exc).__name__}: {exc}", kind="server_error"), status_code=500)


class _Gate:
    """Checks made before a /v1 request's body is read: the API key first (a stranger learns
    nothing about the API), then the body's size (a prompt bigger than any context is refused
    unread). Plain ASGI, so streamed answers pass through untouched."""

    def __init__(self, app, server: Server):
        self.app = app
        self.server = server

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            headers = {
                name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
            }
            refusal = None
            try:
                self.server.check_key(headers.get("authorization"))
                if int(headers.get("content-length") or 0) > MAX_BODY_BYTES:
                    raise ApiError(
                        413,
                        f"the request body is over {MAX_BODY_BYTES >> 20} MiB; send a shorter prompt",
                        code="request_too_large",
                    )
            except ApiError as exc:
                refusal = JSONResponse(exc.body(), status_code=exc.status)
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

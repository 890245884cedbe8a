"""The OpenAI wire format the server speaks: request bodies, response bodies and stream
chunks, and the error body clients parse.

Only the request fields olivepress acts on are declared; other OpenAI fields (``user``,
``n=1``, ``presence_penalty``, …) are accepted and ignored so that existing clients work
unchanged.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str
    max_tokens: int | None = Field(
        None, description="Most tokens to generate; default: what fits the context, at most 256."
    )
    max_completion_tokens: int | None = Field(None, description="The newer OpenAI name for max_tokens.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 or absent: greedy; above 0: sample.")
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=1, description="One choice per request.")

    @field_validator("max_tokens", "max_completion_tokens")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be at least 1 (got {value})")
        return value

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_tokens or self.max_completion_tokens

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not stop for stop in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops

    @property
    def stops(self) -> list[str]:
        return list(self.stop or [])

    @property
    def do_sample(self) -> bool:
        # Greedy unless the client asks for randomness: a temperature above 0, or a top_p /
        # top_k that narrows sampling (OpenAI samples by default; a local server that answers
        # the same question the same way is the more useful default, and temperature=1 restores
        # it). temperature=0 is greedy whatever else is set, as it is for OpenAI.
        if self.temperature == 0:
            return False
        return bool(self.temperature) or (self.top_p is not None and self.top_p < 1) or (self.top_k or 1) > 1


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        """The message's text; OpenAI's list-of-parts form is joined (text parts only)."""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text":
                raise ValueError(f"content parts of type '{part.get('type')}' are not supported; send text")
            parts.append(str(part.get("text", "")))
        return "".join(parts)


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)

    def conversation(self) -> list[dict[str, str]]:
        role = {"developer": "system"}
        return [{"role": role.get(m.role, m.role), "content": m.text()} for m in self.messages]


class CompletionRequest(_Request):
    prompt: str | list[str]
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("send one prompt per request (a list of exactly one string)")
        return value

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


def error_body(
    message: str, *, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The body OpenAI's clients turn into their APIError types."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class ApiError(Exception):
    """A request the server refuses, answered with an OpenAI-style error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind

    def body(self) -> dict[str, Any]:
        return error_body(self.message, kind=self.kind, code=self.code, param=self.param)


@dataclass
class Finished:
    """A generation's outcome, as the replies report it."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of text or a stop string), "length" (max_tokens), "cancelled"


def include_usage(body: ChatCompletionRequest | CompletionRequest) -> bool:
    return bool((body.stream_options or {}).get("include_usage"))


def _usage(done: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


def _sse(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


class Reply:
    """Response bodies and stream chunks for one request, sharing its id and timestamp."""

    def __init__(self, prefix: str, kind: str, model: str, echo: str = ""):
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.kind = kind
        self.model = model
        self.created = int(time.time())
        self.echo = echo

    def _head(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }

    def chat(self, done: Finished) -> dict[str, Any]:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": done.text},
            "finish_reason": done.finish_reason,
            "logprobs": None,
        }
        return {**self._head(self.kind), "choices": [choice], "usage": _usage(done)}

    def completion(self, done: Finished) -> dict[str, Any]:
        choice = {
            "index": 0,
            "text": self.echo + done.text,
            "finish_reason": done.finish_reason,
            "logprobs": None,
        }
        return {**self._head(self.kind), "choices": [choice], "usage": _usage(done)}

    async def chat_events(
        self, pieces: AsyncIterator[str | Finished], include_usage: bool
    ) -> AsyncIterator[str]:
        kind = "chat.completion.chunk"
        first = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "finish_reason": None,
            "logprobs": None,
        }
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

    async def completion_events(
        self, pieces: AsyncIterator[str | Finished], include_usage: bool
    ) -> AsyncIterator[str]:
        if self.echo:
            echoed = {"index": 0, "text": self.echo, "finish_reason": None, "logprobs": None}
            yield _sse({**self._head(self.kind), "choices": [echoed]})
        async for piece in pieces:
            if isinstance(piece, Finished):
                last = {"index": 0, "text": "", "finish_reason": piece.finish_reason, "logprobs": None}
                yield _sse({**self._head(self.kind), "choices": [last]})
                if include_usage:
                    yield _sse({**self._head(self.kind), "choices": [], "usage": _usage(piece)})
            elif piece:
                text = {"index": 0, "text": piece, "finish_reason": None, "logprobs": None}
                yield _sse({**self._head(self.kind), "choices": [text]})
        yield _sse("[DONE]")

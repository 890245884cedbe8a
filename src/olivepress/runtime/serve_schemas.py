"""The OpenAI wire format the server speaks: request bodies, and the error body clients parse.

Only the fields olivepress acts on are declared; other OpenAI fields (``user``, ``n=1``,
``presence_penalty``, …) are accepted and ignored so that existing clients work unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str
    max_tokens: int | None = Field(None, description="Most tokens to generate; default: what fits the context, at most 256.")
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


def error_body(message: str, *, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The body OpenAI's clients turn into their APIError types."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}

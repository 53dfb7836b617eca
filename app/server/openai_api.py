"""OpenAI's API shapes: requests read into what the engine takes, replies written as OpenAI's.

Only what Hearth can honour is accepted; a request asking for more (several choices, tools,
images, log probabilities) gets a 400 that says so, instead of a reply that ignores it.
Shapes follow https://platform.openai.com/docs/api-reference/chat so the official clients work.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from app.engine.grammar import response_format_error
from app.engine.types import ChatMessage, GenerationStats, ReplyRules
from app.settings import Sampling

MAX_STOP_STRINGS = 16
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ApiError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = (
            status,
            message,
            kind,
            code,
            param,
        )

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.kind, self.code, self.param)


def error_body(
    message: str,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


@dataclass
class Request:
    """A chat or completion request as the engine takes it."""

    model: str
    sampling: Sampling
    rules: ReplyRules
    stream: bool = False
    include_usage: bool = False
    messages: list[ChatMessage] = field(default_factory=list)  # a chat
    prompt: str | None = None  # a plain completion


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise bad(f"{key} must be a number from {low:g} to {high:g}", key)
    return float(value)


def _whole(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad(f"{key} must be a whole number from {low} to {high}", key)
    return value


def _common(body: Any, defaults: Sampling, reply_limit: int) -> Request:
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model is required: one of the ids from GET /v1/models", "model")
    n = _whole(body, "n", 1, 2**31)
    if n not in (None, 1):
        raise bad("this server makes one choice per request (n = 1)", "n")
    for unsupported in ("logprobs", "top_logprobs", "tools", "functions", "logit_bias"):
        if body.get(unsupported):
            raise bad(f"{unsupported} is not supported by this server", unsupported)
    sampling = replace(defaults, max_tokens=reply_limit)
    if (value := _number(body, "temperature", 0, 2)) is not None:
        sampling.temperature = value
    if (value := _number(body, "top_p", 0, 1)) is not None:
        sampling.top_p = value
    if (value := _number(body, "min_p", 0, 1)) is not None:  # llama.cpp's server's extras
        sampling.min_p = value
    if (value := _number(body, "repeat_penalty", 0, 5)) is not None:
        sampling.repeat_penalty = value
    if (whole := _whole(body, "top_k", 0, 1 << 20)) is not None:
        sampling.top_k = whole
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        sampling.max_tokens = _whole({key: limit}, key, 1, 1 << 24) or 1
    if (seed := _whole(body, "seed", -(2**63), 2**63 - 1)) is not None:
        sampling.seed = seed & 0xFFFFFFFF
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is None:
        stop = []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise bad("stop must be a string or a list of strings", "stop")
    if len(stop) > MAX_STOP_STRINGS:
        raise bad(f"at most {MAX_STOP_STRINGS} stop strings", "stop")
    fmt = body.get("response_format")
    problem = response_format_error(fmt)
    if problem:
        raise bad(problem, "response_format")
    options = body.get("stream_options")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("stream must be true or false", "stream")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return Request(model, sampling, ReplyRules(tuple(stop), fmt), stream, include_usage)


def _text_of(content: Any, where: str) -> str:
    """A message's text: a string, or a list of parts of which only text parts are understood."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad(f"{where}: only text content is supported (got {kind})", "messages")
            text = part.get("text")
            if not isinstance(text, str):
                raise bad(f"{where}: a text part needs its text", "messages")
            texts.append(text)
        return "\n".join(texts)
    raise bad(f"{where}: content must be a string or a list of text parts", "messages")


def read_chat(body: Any, defaults: Sampling, reply_limit: int) -> Request:
    request = _common(body, defaults, reply_limit)
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise bad("messages must be a non-empty list", "messages")
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object", "messages")
        role = ROLES.get(message.get("role", ""))
        if role is None:
            raise bad(
                f"{where}: role must be system, developer, user or assistant "
                f"(got {message.get('role')!r})",
                "messages",
            )
        request.messages.append({"role": role, "content": _text_of(message.get("content"), where)})
    return request


def read_completion(body: Any, defaults: Sampling, reply_limit: int) -> Request:
    request = _common(body, defaults, reply_limit)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad("prompt must be a string (one prompt per request)", "prompt")
    if body.get("echo") or body.get("suffix"):
        raise bad("echo and suffix are not supported by this server")
    request.prompt = prompt
    return request


def finish_reason(stats: GenerationStats) -> str:
    return "length" if stats.stop_reason in ("length", "context_full") else "stop"


def usage(stats: GenerationStats) -> dict[str, Any]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
        # OpenAI's field for prompt tokens reused from the cache (the KV prefix here)
        "prompt_tokens_details": {
            "cached_tokens": stats.prompt_tokens - stats.prompt_tokens_evaluated
        },
    }


class Shapes:
    """The objects of one reply: its id, creation time and model are the same in every chunk."""

    def __init__(self, model: str, chat: bool) -> None:
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def whole(self, text: str, stats: GenerationStats) -> dict[str, Any]:
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(stats),
            }
            obj = "chat.completion"
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish_reason(stats),
            }
            obj = "text_completion"
        return {**self._head(obj), "choices": [choice], "usage": usage(stats)}

    def chunk(
        self, text: str | None, finish: str | None = None, first: bool = False
    ) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish,
            }
            return {**self._head("chat.completion.chunk"), "choices": [choice]}
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return {**self._head("text_completion"), "choices": [choice]}

    def usage_chunk(self, stats: GenerationStats) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._head(obj), "choices": [], "usage": usage(stats)}

"""An engine on an OpenAI-compatible server: another Hearth, llama-server, Ollama, LM Studio, vLLM.

It speaks only OpenAI's ``/v1`` API with its standard fields, so that the strictest servers take
it; Stop and a closed reply end a request at once (app/engine/remote_http.py says how).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from app import __version__
from app.engine.remote_http import Exchange, error_message, unreachable_reason
from app.engine.remote_http import is_loopback as is_loopback  # re-exported: the offline rule
from app.engine.remote_http import normalise_url as normalise_url
from app.engine.types import (
    NO_RULES,
    ChatMessage,
    EngineError,
    GenerationStats,
    LoadedModel,
    LoadParams,
    Reply,
    ReplyRules,
    StopReason,
)
from app.settings import Sampling

log = logging.getLogger(__name__)

_NO_CANCEL = threading.Event()  # never set


class RemoteEngine:
    """The Engine contract over an OpenAI-compatible server's ``/v1`` API (see module doc)."""

    def __init__(self, base_url: str, api_key: str = "", name: str = "") -> None:
        self.base_url = normalise_url(base_url)
        self.name = name or "the server"
        self._url = urlsplit(self.base_url)
        self._api_key = api_key
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()
        self._live: set[Exchange] = set()  # requests under way (a listing may overlap a reply)

    @property
    def _title(self) -> str:
        return self.name[:1].upper() + self.name[1:]

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def models(self, cancel: threading.Event | None = None) -> list[str]:
        """The ids of the server's models; empty when it does not list them."""
        return self._listed(cancel) or []

    def load(
        self, path: str, params: LoadParams, cancel: threading.Event | None = None
    ) -> LoadedModel:
        """Use the server's model ``path`` (its id), checked against ``/v1/models``. A server
        that does not list models (404) or lists none is taken at its word; an empty ``path``
        means the server's only model."""
        self._loaded = None
        listed = self._listed(cancel)
        shown = ", ".join((listed or [])[:8]) + (", …" if len(listed or []) > 8 else "")
        if not path and listed and len(listed) == 1:
            path = listed[0]
        elif not path:
            raise EngineError(
                f"Name one of {self.name}'s models: {shown}."
                if listed
                else f"{self._title} does not list its models: name the one to use."
            )
        elif listed and path not in listed:
            raise EngineError(f"{self._title} has no model named {path}. It has: {shown}.")
        # The server applies the model's chat template; the context is what it was started with.
        self._loaded = LoadedModel(path, path, params.context_length, "model", "the server's", 0)
        log.info("using %s at %s", path, self.base_url)
        return self._loaded

    def unload(self) -> None:
        self._loaded = None

    def chat(
        self,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        return self._reply("/chat/completions", {"messages": messages}, sampling, cancel, rules)

    def complete(
        self,
        prompt: str,
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        return self._reply("/completions", {"prompt": prompt}, sampling, cancel, rules)

    def format_prompt(self, messages: list[ChatMessage], enable_thinking: bool = True) -> str:
        raise EngineError(
            f"{self._title} applies the chat template itself; Hearth cannot show its prompt."
        )

    def prepare(self, messages: list[ChatMessage]) -> None:
        """Nothing: a server keeps its own prompt cache."""

    def interrupt(self) -> None:
        with self._lock:
            live = list(self._live)
        for exchange in live:
            exchange.abort()

    def close(self) -> None:
        with self._lock:
            live = list(self._live)
        for exchange in live:
            exchange.abort()
            exchange.join(1.0)
        self._loaded = None

    # --- requests

    def _send(self, method: str, path: str, payload: dict[str, Any] | None) -> Exchange:
        from app.hub import offline  # the Settings switch lives with the Hub's connections

        if offline() and not is_loopback(self.base_url):
            raise EngineError(
                f"Hearth is in offline mode: it connects only to servers on this computer, not "
                f"to {self._url.hostname}. Turn offline mode off in Settings."
            )
        headers = {"User-Agent": f"Hearth/{__version__}", "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
            if payload.get("stream"):
                headers["Accept"] = "text/event-stream"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        body = None if payload is None else json.dumps(payload).encode()
        exchange = Exchange(self._url, method, path, body, headers)
        with self._lock:
            self._live.add(exchange)
        return exchange

    def _finish(self, exchange: Exchange) -> None:
        exchange.abort()  # nothing left to do when the request has ended
        with self._lock:
            self._live.discard(exchange)

    def _status(self, exchange: Exchange, cancel: threading.Event) -> int | None:
        item = exchange.next(cancel)
        if item is None:
            return None
        kind, value = item
        if kind == "unreachable":
            why = unreachable_reason(value)
            raise EngineError(f"Could not reach {self.name} at {self.base_url}: {why}.")
        if kind == "lost":
            log.info("%s closed the connection: %r", self.base_url, value)
            raise EngineError(f"{self._title} closed the connection without answering.")
        return int(value)

    def _http_error(self, status: int, body: bytes, path: str, model: str) -> EngineError:
        message = error_message(body)
        if status in (401, 403):
            if not self._api_key:
                return EngineError(f"{self._title} asks for an API key.")
            return EngineError(f"{self._title} refused the API key.")
        if status == 404 and model and "model" in message.lower():
            return EngineError(f"{self._title} has no model named {model}.")
        if status == 404:
            return EngineError(
                f"{self._title} has nothing at {self.base_url}{path} (HTTP 404): is "
                f"{self.base_url} the address of its OpenAI-compatible API (often ending in /v1)?"
            )
        return EngineError(f"{self._title} reported an error (HTTP {status}): {message or '…'}")

    def _listed(self, cancel: threading.Event | None) -> list[str] | None:
        exchange = self._send("GET", "/models", None)
        try:
            status = self._status(exchange, cancel or _NO_CANCEL)
            item = exchange.next(cancel or _NO_CANCEL) if status is not None else None
            if item is None:
                raise EngineError("Loading was cancelled.")
            kind, body = item
            if kind == "lost":
                raise EngineError(f"The connection to {self.name} was lost.")
            if status in (404, 405, 501):  # lists no models: the chat request will tell
                return None
            if status != 200:
                raise self._http_error(int(status or 0), body, "/models", "")
            try:
                data = json.loads(body)["data"]
                return [str(m["id"]) for m in data]
            except (ValueError, TypeError, KeyError) as e:
                raise EngineError(
                    f"{self._title} at {self.base_url} does not answer like an OpenAI-compatible "
                    "server: is the address right?"
                ) from e
        finally:
            self._finish(exchange)

    def _reply(
        self,
        path: str,
        request: dict[str, Any],
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules,
    ) -> Reply:
        if self._loaded is None:
            raise EngineError("No model is loaded.")
        s = sampling.clamped()
        payload: dict[str, Any] = {"model": self._loaded.path, **request, "stream": True}
        payload["stream_options"] = {"include_usage": True}
        payload.update(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens)
        if s.seed >= 0:
            payload["seed"] = s.seed
        if rules.stop:
            payload["stop"] = list(rules.stop)
        if rules.response_format is not None:
            payload["response_format"] = rules.response_format
        stats = GenerationStats()
        return Reply(self._deltas(path, payload, cancel, stats), stats)

    def _event(self, data: bytes, chat: bool) -> tuple[str, str | None, dict[str, Any]]:
        """One streamed chunk's text, finish_reason and usage (OpenAI's chunk shapes)."""
        try:
            event = json.loads(data)
            if event.get("error"):
                raise EngineError(f"{self._title} reported an error: {error_message(data) or '…'}")
            usage = event.get("usage") or {}
            choice = (event.get("choices") or [{}])[0]  # usage comes in a chunk without choices
            text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
            if not isinstance(usage, dict):
                raise TypeError(usage)
            return (text if isinstance(text, str) else ""), choice.get("finish_reason"), usage
        except (ValueError, AttributeError, TypeError, IndexError):
            raise EngineError(f"{self._title} sent a reply Hearth cannot read.") from None

    def _deltas(
        self,
        path: str,
        payload: dict[str, Any],
        cancel: threading.Event,
        stats: GenerationStats,
    ) -> Iterator[str]:
        started = time.monotonic()
        first = last = 0.0
        chunks = 0
        usage: dict[str, Any] = {}
        finish: str | None = None
        ended = False
        stats.stop_reason = "cancelled"  # unless it ends otherwise
        chat = path == "/chat/completions"
        exchange = self._send("POST", path, payload)
        try:
            status = self._status(exchange, cancel)
            if status is not None and status != 200:
                item = exchange.next(cancel)
                body = item[1] if item is not None and item[0] == "body" else b""
                raise self._http_error(status, body, path, payload["model"])
            while status is not None and (item := exchange.next(cancel)) is not None:
                kind, line = item
                if kind == "lost" or (kind == "eof" and finish is None):
                    log.info("the connection to %s ended: %r", self.base_url, line)
                    if chunks:
                        raise EngineError(f"The connection to {self.name} was lost mid-reply.")
                    raise EngineError(f"{self._title} closed the connection without answering.")
                # An end after a finish_reason but before [DONE] is an end all the same.
                data = line.strip()[5:].strip() if line.startswith(b"data:") else b""
                if kind == "eof" or data == b"[DONE]":
                    ended = True
                    break
                if not data:  # blank lines, ": keep-alive" comments, event: and id: fields
                    continue
                text, finished, sent = self._event(data, chat)
                finish, usage = finished or finish, sent or usage
                if text:
                    last = time.monotonic()
                    first = first or last
                    chunks += 1
                    yield text
            if ended:
                reason: StopReason = "length" if finish == "length" else "eos"
                stats.stop_reason = reason
        finally:
            self._finish(exchange)
            _fill(stats, started, first, last, chunks, usage)


def _fill(
    stats: GenerationStats,
    started: float,
    first: float,
    last: float,
    chunks: int,
    usage: dict[str, Any],
) -> None:
    """Stats as measured on arrival; the token counts from the server's ``usage`` when sent."""
    if first:
        stats.time_to_first_token = stats.prompt_seconds = first - started
        stats.generation_seconds = last - first
    generated = usage.get("completion_tokens")
    stats.generated_tokens = generated if isinstance(generated, int) else chunks
    prompt = usage.get("prompt_tokens")
    stats.prompt_tokens = prompt if isinstance(prompt, int) else 0
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    stats.prompt_tokens_evaluated = stats.prompt_tokens - (cached if isinstance(cached, int) else 0)
    if stats.generated_tokens > 1 and stats.generation_seconds > 0:
        stats.tokens_per_second = (stats.generated_tokens - 1) / stats.generation_seconds

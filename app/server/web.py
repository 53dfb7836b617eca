"""The HTTP side of the API server: Starlette routes over the model host, served by uvicorn.

Starlette (routing, requests, streamed responses) and uvicorn (HTTP/1.1, keep-alive, graceful
shutdown) are small, well kept and what most Python inference servers stand on; FastAPI's schema
generation would add pydantic models of every OpenAI shape for docs nobody here reads.

Guards: an API key (``Authorization: Bearer``) when one is set; JSON bodies only, up to
MAX_BODY_BYTES; on loopback, only requests addressed to a loopback name (a web page that rebinds
its DNS name to 127.0.0.1 still sends its own name). No CORS headers unless asked for, so
browsers keep other sites' pages from reading replies.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.engine.grammar import InvalidRequest
from app.engine.types import EngineError, GenerationStats
from app.library import LibraryEntry
from app.server.host import ModelHost, model_card
from app.server.openai_api import (
    ApiError,
    Request,
    Shapes,
    error_body,
    finish_reason,
    read_chat,
    read_completion,
)
from app.settings import Sampling

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 8 << 20  # a 128k-token conversation is about half a megabyte of JSON
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
DISCONNECT_POLL = 0.25  # how often a request with nothing to send looks whether its client left


def _error(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


def _host_name(header: str) -> str:
    if header.startswith("["):
        return header.split("]")[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def create_app(
    host: ModelHost,
    sampling: Callable[[], Sampling],
    api_key: str = "",
    loopback_only: bool = True,
    cors: bool = False,
) -> Starlette:
    async def guard(request: HttpRequest) -> None:
        if loopback_only and _host_name(request.headers.get("host", "")) not in LOOPBACK_NAMES:
            raise ApiError(403, "This server answers requests to localhost only", code="forbidden")
        if api_key:
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), api_key.encode()
            ):
                raise ApiError(
                    401,
                    "Incorrect API key provided"
                    if given
                    else "An API key is required (Authorization: Bearer KEY)",
                    code="invalid_api_key",
                )

    async def body_of(request: HttpRequest) -> Any:
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind != "application/json":
            raise ApiError(415, "Send the body as JSON (Content-Type: application/json)")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ApiError(413, f"The request body is over {MAX_BODY_BYTES >> 20} MiB")
        data = bytearray()
        async for part in request.stream():
            data += part
            if len(data) > MAX_BODY_BYTES:
                raise ApiError(413, f"The request body is over {MAX_BODY_BYTES >> 20} MiB")
        try:
            return json.loads(data)
        except ValueError as e:
            raise ApiError(400, f"The body is not valid JSON: {e}") from None

    async def models(request: HttpRequest) -> Response:
        try:
            await guard(request)
            ids = await asyncio.to_thread(host.models, True)
        except ApiError as e:
            return _error(e)
        cards = [model_card(name, entry) for name, entry in ids.items()]
        return JSONResponse({"object": "list", "data": cards})

    async def one_model(request: HttpRequest) -> Response:
        try:
            await guard(request)
            name, entry = await asyncio.to_thread(host.find, request.path_params["model"])
        except ApiError as e:
            return _error(e)
        return JSONResponse(model_card(name, entry))

    async def respond(request: HttpRequest, read: Callable[..., Request], chat: bool) -> Response:
        try:
            await guard(request)
            parsed = read(await body_of(request), sampling(), host.context_length())
            model = await asyncio.to_thread(host.find, parsed.model)
        except ApiError as e:
            return _error(e)
        shapes = Shapes(model[0], chat)
        pieces = _in_thread(host, parsed, model, request)
        if parsed.stream:
            return StreamingResponse(
                _events(pieces, shapes, parsed.include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        texts: list[str] = []
        stats = GenerationStats()
        try:
            async for piece in pieces:
                if isinstance(piece, str):
                    texts.append(piece)
                else:
                    stats = piece
        except ApiError as e:
            return _error(e)
        return JSONResponse(shapes.whole("".join(texts), stats))

    async def chat_completions(request: HttpRequest) -> Response:
        return await respond(request, read_chat, chat=True)

    async def completions(request: HttpRequest) -> Response:
        return await respond(request, read_completion, chat=False)

    middleware = []
    if cors:
        middleware.append(
            Middleware(
                CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"]
            )
        )
    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model:path}", one_model, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ],
        middleware=middleware,
    )


async def _in_thread(
    host: ModelHost, request: Request, model: tuple[str, LibraryEntry], http: HttpRequest
) -> AsyncGenerator[str | GenerationStats, None]:
    """The reply made on a thread of its own (the engine blocks), handed to the event loop as it
    comes. When the client leaves, or the response is abandoned, the reply is cancelled: the
    engine is free for the next request within a token or two."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancel = threading.Event()

    def put(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the server stopped, its loop closed, while this reply ended
            cancel.set()

    def work() -> None:
        try:
            for piece in host.reply(request, model, cancel):
                put("piece", piece)
                if cancel.is_set():
                    break
        except InvalidRequest as e:
            put("error", ApiError(400, str(e)))
        except ApiError as e:
            put("error", e)
        except EngineError as e:
            put("error", ApiError(500, str(e), kind="server_error"))
        except Exception as e:
            log.exception("API request failed")
            put("error", ApiError(500, f"The server failed unexpectedly: {e}", kind="server_error"))
        finally:
            put("end", None)

    async def watch() -> None:
        """The client leaving while nothing is sent (waiting for its turn, reading a long
        prompt, a whole reply being made) ends the reply; a stream's send would see it too."""
        while not cancel.is_set():
            await asyncio.sleep(DISCONNECT_POLL)
            if await http.is_disconnected():
                log.info("API client left; stopping its reply")
                cancel.set()
                queue.put_nowait(("end", None))

    threading.Thread(target=work, name="hearth-api-reply", daemon=True).start()
    # One watcher for the whole reply, not a timed wait per piece: each piece then costs the
    # event loop one wake-up.
    watcher = asyncio.create_task(watch())
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        cancel.set()
        watcher.cancel()


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


async def _events(
    pieces: AsyncGenerator[str | GenerationStats, None], shapes: Shapes, include_usage: bool
) -> AsyncIterator[bytes]:
    """Server-sent events as OpenAI streams them: a first chunk with the role, one per piece of
    text, one with the finish reason, the usage when asked for, then ``[DONE]``."""
    if shapes.chat:
        yield _sse(shapes.chunk("", first=True))
    stats = GenerationStats(stop_reason="cancelled")
    try:
        async for piece in pieces:
            if isinstance(piece, str):
                yield _sse(shapes.chunk(piece))
            else:
                stats = piece
    except ApiError as e:  # after the headers went out, an error can only be an event
        yield _sse(error_body(e.message, e.kind, e.code))
        return
    finally:
        await pieces.aclose()
    if stats.stop_reason == "cancelled":
        return
    yield _sse(shapes.chunk(None, finish_reason(stats)))
    if include_usage:
        yield _sse(shapes.usage_chunk(stats))
    yield b"data: [DONE]\n\n"

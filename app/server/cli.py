"""``hearth serve``: the API server in the foreground, without a window (no display needed)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from app.context import AppContext
from app.secrets import SERVER_KEY, get_secret


class ServeError(Exception):
    pass


def add_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve the library's models over an OpenAI-compatible API",
        description="Serve the library's models over an OpenAI-compatible API (/v1/models, "
        "/v1/chat/completions, /v1/completions). Loopback only unless --host says otherwise, "
        "which needs an API key.",
    )
    serve.add_argument("--host", help="address to listen on (default: the setting, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: the setting, 8484)")
    serve.add_argument(
        "--api-key",
        help="key clients must send as 'Authorization: Bearer KEY' (default: $HEARTH_API_KEY, "
        "else the key saved in Settings → Local server, else none on loopback)",
    )
    serve.add_argument("-m", "--model", help="load this model at once (else on first request)")
    serve.add_argument(
        "--idle-minutes", type=int, help="unload a model unused this long (0: never)"
    )
    serve.add_argument("--cors", action="store_true", help="let web pages of any origin call it")
    serve.add_argument(
        "--save-chats", action="store_true", help="keep requests and replies as conversations"
    )


def serve(args: argparse.Namespace, ctx: AppContext) -> int:
    from app.engine.local import local_engine
    from app.engine.shared import SharedEngine
    from app.engine.types import EngineError
    from app.library import LibraryError
    from app.server.host import ModelHost
    from app.server.run import ApiServer, ServerError, ServerOptions
    from app.server.saving import SavedRequests

    s = ctx.settings
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ServeError("--port must be from 0 to 65535")
    key = args.api_key or os.environ.get("HEARTH_API_KEY") or get_secret(SERVER_KEY) or ""
    options = ServerOptions(
        host=args.host or s.server_host,
        port=s.server_port if args.port is None else args.port,
        api_key=key,
        cors=args.cors or s.server_cors,
    )
    shared = SharedEngine(local_engine(ctx.paths), paced=True)
    idle = s.server_idle_minutes if args.idle_minutes is None else max(0, args.idle_minutes)
    saving = SavedRequests(ctx.paths.chats_db) if args.save_chats or s.server_save_chats else None
    host = ModelHost(shared.seat("api"), ctx.library.scan, ctx.load_params, idle * 60, saving)
    server: ApiServer | None = None
    try:
        server = ApiServer(host, options, lambda: ctx.settings.sampling)
        server.bind()
        if args.model:
            entry = ctx.library.find(args.model)
            print(f"Loading {entry.name}…", file=sys.stderr)
            host.seat.load(str(entry.path), ctx.load_params(str(entry.path)))
        names = ", ".join(host.models()) or "none yet (hearth models add FILE.gguf)"
        url = server.options.url

        def ready() -> None:
            print(f"Serving on {url}  models: {names}", file=sys.stderr)
            if key:
                print("Clients must send the API key (Authorization: Bearer …).", file=sys.stderr)
            print("Ctrl+C stops.", file=sys.stderr, flush=True)

        server.serve_forever(ready)
    except (ServerError, LibraryError, EngineError) as e:
        raise ServeError(str(e)) from None
    finally:
        if server is not None:
            server.stop()  # its socket, when a signal came before it served
        host.close()
    return 0

"""Starting and stopping the API server: in the foreground (``hearth serve``) or on a thread of
the window's process (Settings → Local server), always on the shared engine."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

import uvicorn

from app.server.host import ModelHost
from app.server.web import create_app
from app.settings import Sampling

log = logging.getLogger(__name__)


class ServerError(Exception):
    """The server cannot start; ``str(e)`` is for the user."""


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8484
    api_key: str = ""
    cors: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, which ends the replies under way when it stops: uvicorn would wait up to
    its graceful timeout for each streaming reply to finish, and a long one never does in time."""

    def __init__(self, config: uvicorn.Config, stopping: Callable[[], None]) -> None:
        super().__init__(config)
        self._stopping = stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stopping()
        await super().shutdown(sockets)


class ApiServer:
    """One server: ``start`` binds (raising ServerError with the reason), then ``serve_forever``
    in the foreground or ``start_thread``; ``stop`` ends it and every reply it was making."""

    def __init__(self, host: ModelHost, options: ServerOptions, sampling: Callable[[], Sampling]):
        if not is_loopback_host(options.host) and not options.api_key:
            raise ServerError(
                f"Listening on {options.host} lets other machines use your models: set an API "
                "key first (--api-key, or in Settings → Local server)."
            )
        self.host = host
        self.options = options
        app = create_app(
            host,
            sampling,
            api_key=options.api_key,
            loopback_only=is_loopback_host(options.host),
            cors=options.cors,
        )
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = _Uvicorn(config, host.stop_replies)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def bind(self) -> None:
        o = self.options
        family = socket.AF_INET6 if ":" in o.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((o.host.strip("[]"), o.port))
        except OSError as e:
            sock.close()
            reason = "the port is in use" if e.errno in (48, 98, 10048) else e.strerror or str(e)
            raise ServerError(f"Cannot listen on {o.host}:{o.port}: {reason}.") from None
        sock.listen(128)
        sock.set_inheritable(True)
        self._socket = sock
        if o.port == 0:  # tests: the port the system chose
            self.options = ServerOptions(o.host, sock.getsockname()[1], o.api_key, o.cors)

    def serve_forever(self, ready: Callable[[], None] | None = None) -> None:
        """Serve until Ctrl+C or SIGTERM (uvicorn's handlers on the main thread) or ``stop``;
        then return, for the caller to close the engine. ``ready`` is called once a signal
        would stop it so (to say "Ctrl+C stops")."""
        if self._socket is None:
            self.bind()
        assert self._socket is not None
        with self._signals_stop_it():
            if ready is not None:
                ready()
            asyncio.run(self._server.serve(sockets=[self._socket]))

    @contextlib.contextmanager
    def _signals_stop_it(self) -> Iterator[None]:
        """Once it has stopped, uvicorn raises the signal that stopped it again, for the handler
        it found: Python's default would end the process at once on SIGTERM (the engine process
        unclosed, its semaphores reported as leaked, exit status -15) and raise KeyboardInterrupt
        on Ctrl+C. The handler it finds here only asks it to stop (for a signal that comes just
        before it serves), so a server stopped by a signal ends as it would by ``stop``."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        numbers = (signal.SIGINT, signal.SIGTERM)
        before = {number: signal.signal(number, self._stop_soon) for number in numbers}
        try:
            yield
        finally:
            for number, handler in before.items():
                signal.signal(number, handler)

    def _stop_soon(self, number: int, frame: FrameType | None) -> None:
        self._server.should_exit = True

    def start_thread(self) -> None:
        if self._socket is None:
            self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="hearth-api", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 3.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

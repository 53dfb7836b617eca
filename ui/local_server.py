"""The API server inside the window's process (Settings → Local server), on the window's engine.

The server runs on threads of its own (uvicorn's event loop, one thread per reply); it takes turns
with the window's chats on one engine (app/engine/shared.py). This object starts and stops it
from the GUI thread and tells the window what it is doing, looked at once a second while on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app import secrets
from app.context import AppContext
from app.engine.shared import SharedEngine

if TYPE_CHECKING:  # the server's libraries (uvicorn, the HTTP stack) load when it starts
    from app.server.host import ModelHost
    from app.server.run import ApiServer

log = logging.getLogger(__name__)
ANY_ADDRESS = "0.0.0.0"
LOOPBACK = "127.0.0.1"


class LocalServer(QObject):
    changed = Signal()  # started, stopped, failed, or served another request

    def __init__(self, ctx: AppContext, shared: SharedEngine, parent: QObject | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.shared = shared
        self.error = ""
        self._server: ApiServer | None = None
        self._host: ModelHost | None = None
        self._last_seen: tuple[int, bool] | None = None  # requests served, replying now
        self._watch = QTimer(self)
        self._watch.setInterval(1000)
        self._watch.timeout.connect(self._look)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return self._server.options.url if self._server is not None else ""

    @property
    def requests_served(self) -> int:
        return self._host.served.requests if self._host is not None else 0

    @property
    def replying(self) -> bool:
        return self._host is not None and self._host.served.active > 0

    def api_key(self) -> str:
        return secrets.get_secret(secrets.SERVER_KEY) or ""

    def start(self) -> bool:
        """Start with the current settings; False (with ``error`` said) when it cannot."""
        from app.server.host import ModelHost
        from app.server.run import ApiServer, ServerError, ServerOptions
        from app.server.saving import SavedRequests

        self.stop()
        s = self.ctx.settings
        options = ServerOptions(s.server_host, s.server_port, self.api_key(), s.server_cors)
        host = ModelHost(
            self.shared.seat("api"),
            self.ctx.library.scan,
            self.ctx.load_params,
            s.server_idle_minutes * 60,
            SavedRequests(self.ctx.paths.chats_db) if s.server_save_chats else None,
        )
        try:
            server = ApiServer(host, options, lambda: self.ctx.settings.sampling)
            server.start_thread()
        except ServerError as e:
            host.close()
            self.error = str(e)
            log.warning("the API server did not start: %s", e)
            self.changed.emit()
            return False
        self._server, self._host, self.error = server, host, ""
        log.info("API server on %s", server.options.url)
        self._watch.start()
        self.changed.emit()
        return True

    def stop(self) -> None:
        self._watch.stop()
        server, host = self._server, self._host
        self._server = self._host = None
        if server is not None:
            server.stop()
        if host is not None:
            host.close()
        if server is not None:
            log.info("API server stopped")
            self.changed.emit()

    def shutdown(self) -> None:
        """The window closes: stop without telling anyone."""
        self.blockSignals(True)
        self.stop()

    @Slot()
    def _look(self) -> None:
        seen = (self.requests_served, self.replying)
        if seen != self._last_seen:
            self._last_seen = seen
            self.changed.emit()

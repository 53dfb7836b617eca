"""One Hearth window per set of files: opening Hearth again brings the running window forward.

Two windows on the same chats and downloads would work (the store and the downloader are made
for several processes) but confuse: two engines each holding a model in memory, two download
queues. So the first Hearth to start claims a lock beside a local socket named after its data
folder; a later one finds the lock held, tells the first through the socket to show itself, and
exits. A lock (QLockFile), not only the socket: two Hearths started at the same moment must not
both decide they are first, and a crashed Hearth's lock is recognised as stale by its process id.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import tempfile
from pathlib import Path

from PySide6.QtCore import QDeadlineTimer, QLockFile, QObject, QThread, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QWidget

log = logging.getLogger(__name__)

WAKE = b"show\n"
CONNECT_TIMEOUT_MS = 3000  # a first Hearth still starting needs a moment to listen


def instance_name(data_dir: Path) -> str:
    """The socket's name: one per user and data folder (HEARTH_HOME gives another instance),
    short enough for a Unix socket path."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name (a container without one)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    digest = hashlib.sha256(f"{user}\0{data_dir.resolve()}".encode()).hexdigest()[:16]
    return f"hearth-{digest}"


class SingleInstance(QObject):
    """``claim()`` once at start: True for the first Hearth (which then listens), False when
    another one runs (it has been asked to show its window)."""

    activated = Signal()  # another start asked for this window

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = instance_name(data_dir)
        self._lock = QLockFile(str(Path(tempfile.gettempdir()) / f"{self.name}.lock"))
        self._lock.setStaleLockTime(0)  # held as long as its process lives; stale when it died
        self._server: QLocalServer | None = None
        self.window: QWidget | None = None

    def claim(self) -> bool:
        if self._lock.tryLock(0):
            self._listen()
            return True
        if self._wake_the_first():
            return False
        # The lock is held but nobody answers: a Hearth still starting, or one hung. Better a
        # second window than none.
        log.warning("another Hearth holds %s but does not answer; starting anyway", self.name)
        return True

    def _listen(self) -> None:
        QLocalServer.removeServer(self.name)  # a socket file a crashed Hearth left behind
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            log.warning("single-instance socket %s: %s", self.name, server.errorString())
            return
        server.newConnection.connect(self._on_connection)
        self._server = server

    def _wake_the_first(self) -> bool:
        deadline = QDeadlineTimer(CONNECT_TIMEOUT_MS)
        socket = QLocalSocket()
        while not deadline.hasExpired():
            socket.connectToServer(self.name)
            if socket.waitForConnected(200):
                socket.write(WAKE)
                socket.waitForBytesWritten(1000)
                socket.disconnectFromServer()
                return True
            QThread.msleep(100)  # not listening yet: it is starting
        return False

    @Slot()
    def _on_connection(self) -> None:
        assert self._server is not None
        while (connection := self._server.nextPendingConnection()) is not None:
            connection.readyRead.connect(self._on_ready)
            connection.disconnected.connect(connection.deleteLater)

    @Slot()
    def _on_ready(self) -> None:
        connection = self.sender()
        if not isinstance(connection, QLocalSocket):
            return
        if WAKE.strip() in bytes(connection.readAll().data()):
            log.info("Hearth was opened again: showing the window")
            self.activated.emit()
            if self.window is not None:
                bring_forward(self.window)

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._lock.unlock()


def bring_forward(window: QWidget) -> None:
    """Show ``window`` un-minimised, raised and focused (as far as the desktop allows), and a
    dialog open over it (the welcome, say) above it again."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    window.setWindowState(window.windowState() & ~Qt.WindowState.WindowMinimized)
    window.show()
    window.raise_()
    window.activateWindow()
    dialog = QApplication.activeModalWidget()
    if dialog is not None and dialog is not window:
        dialog.raise_()
        dialog.activateWindow()

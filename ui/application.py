"""Start the GUI: application object, theme, core context, engine thread, main window."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable

from PySide6.QtCore import QSocketNotifier, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from app import __version__
from app.chats.store import ChatStore, ChatStoreError
from app.context import AppContext
from app.engine.shared import SharedEngine
from app.engine.types import Engine
from app.logs import setup_logging
from app.markdown_render import warm_up
from ui.about_dialog import app_icon
from ui.engine_controller import EngineController
from ui.local_server import LocalServer
from ui.main_window import MainWindow
from ui.single_instance import SingleInstance
from ui.theme import apply_text_size, apply_theme
from ui.welcome import welcome_if_first_run

log = logging.getLogger(__name__)
WARM_UP_AFTER_MS = 500


def _warm_up_rendering() -> None:
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()


def create_engine() -> Engine:
    # llama.cpp runs on the main thread of its own process (faster there, and a native crash
    # cannot take the window down); the process starts on the engine's first use.
    from app.engine.local import local_engine
    from app.paths import get_paths

    return local_engine(get_paths())


def shared_engine() -> SharedEngine:
    """The one engine the window's chats and the API server take turns on."""
    return SharedEngine(create_engine(), paced=True)


def window_engine(shared: SharedEngine, ctx: AppContext) -> Engine:
    """The window's engine: its seat on the shared engine for model files, and the models of
    Settings → Connections on their servers."""
    from app import connections
    from app.engine.routing import RoutingEngine

    return RoutingEngine(
        shared.seat("window"), lambda name: connections.engine_for(ctx.settings, name)
    )


def close_on_signals(app: QApplication, window: QWidget) -> None:
    """SIGTERM (a logout, ``kill``) and SIGINT (Ctrl+C in the terminal that started it) close
    the window as its close button does: the reply so far is saved, downloads stop where they
    can resume, the engine process ends. Without this Python died at once, leaving the engine's
    semaphore to be reported as leaked. Python sees a signal only when it runs, so the signal
    writes to a socket Qt watches (signal.set_wakeup_fd)."""
    ours, theirs = socket.socketpair()
    for end in (ours, theirs):
        end.setblocking(False)
    try:
        signal.set_wakeup_fd(theirs.fileno())
    except ValueError:  # not the main thread (tests)
        return
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: None)  # handled in Qt's loop, below
    notifier = QSocketNotifier(ours.fileno(), QSocketNotifier.Type.Read, app)

    def on_signal() -> None:
        with contextlib.suppress(OSError):
            ours.recv(64)
        log.info("closing on a signal")
        window.close()

    notifier.activated.connect(on_signal)
    notifier.sockets = (ours, theirs)  # type: ignore[attr-defined]  # alive as long as it is


def run(
    argv: list[str] | None = None, on_started: Callable[[MainWindow], None] | None = None
) -> int:
    """Open the window and run until it closes; ``on_started`` gets the shown window
    (``hearth --self-test`` drives it)."""
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    assert isinstance(app, QApplication)
    app.setApplicationName("Hearth")
    app.setApplicationDisplayName("Hearth")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("hearth")
    app.setWindowIcon(app_icon())

    try:
        ctx = AppContext.open()
        setup_logging(ctx.paths.log_file)
    except OSError as e:  # HEARTH_HOME is a file, a folder is read-only, the disk is full
        where = e.filename or "Hearth's folders"
        QMessageBox.critical(None, "Hearth", f"Hearth cannot use {where}: {e.strerror or e}.")
        return 1
    instance = SingleInstance(ctx.paths.data_dir)
    if not instance.claim():  # Hearth already runs on these files: it was asked to come forward
        log.info("Hearth is already open; its window was asked to come forward")
        return 0
    log.info("Hearth %s starting; data in %s", __version__, ctx.paths.data_dir)
    apply_theme(app, ctx.settings.theme)
    if ctx.settings.text_size:
        apply_text_size(app, ctx.settings.text_size)
    try:
        store = ChatStore(ctx.paths.chats_db)  # marks replies of writers that are gone
    except ChatStoreError as e:
        log.error("%s", e)
        QMessageBox.critical(None, "Hearth", str(e))
        instance.release()
        return 1
    shared = shared_engine()
    engine = EngineController(lambda: window_engine(shared, ctx))
    server = LocalServer(ctx, shared)
    window = MainWindow(ctx, store, engine, server)
    window.show()
    close_on_signals(app, window)
    if ctx.settings.server_enabled:
        server.start()
    instance.window = window  # brought forward when Hearth is opened again
    first_run = None
    if on_started is not None:
        on_started(window)  # hearth --self-test drives the window itself
    else:
        first_run = welcome_if_first_run(window)  # kept here while the app runs
    # Once the window has been painted, import what the first reply's rendering needs.
    QTimer.singleShot(WARM_UP_AFTER_MS, _warm_up_rendering)
    try:
        return app.exec()
    finally:
        del first_run  # the welcome (if any) lived as long as the app ran
        window.chat_page._flush()
        server.shutdown()
        engine.shutdown()
        store.close()
        instance.release()

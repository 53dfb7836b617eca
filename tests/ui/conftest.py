"""GUI fixtures: a scripted fake engine, the assembled main window, and a QThread leak check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.chats.store import ChatStore
from app.context import AppContext
from app.engine.shared import SharedEngine
from tests.fake_engine import FakeEngine
from ui.application import window_engine
from ui.engine_controller import EngineController, live_controllers
from ui.local_server import LocalServer
from ui.main_window import MainWindow


@pytest.fixture(autouse=True)
def no_thread_left_running() -> Iterator[None]:
    yield
    running = [c for c in list(live_controllers) if c.running]
    for c in running:
        c.shutdown()
    assert not running, "a test left the engine QThread running"


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def make_window(qtbot: QtBot, fake_engine: FakeEngine) -> Iterator[Callable[..., MainWindow]]:
    made: list[tuple[MainWindow, EngineController, ChatStore, LocalServer]] = []

    def make(
        engine_factory: Callable[[], Any] | None = None,
        wait_for_library: bool = True,
        titles: bool = False,
    ) -> MainWindow:
        """The window as the app assembles it: the engine is shared, in turns, between the
        window's seat and the API server's (off unless a test starts it)."""
        ctx = AppContext.open()
        # The model's titles ask the engine for a reply of their own after a first reply: off,
        # so that tests count the replies they asked for (tests/ui/test_chat_titles.py: on).
        ctx.settings.model_titles = titles
        store = ChatStore(ctx.paths.chats_db)
        shared = SharedEngine(engine_factory() if engine_factory else fake_engine)
        controller = EngineController(lambda: window_engine(shared, ctx))
        server = LocalServer(ctx, shared)
        window = MainWindow(ctx, store, controller, server)
        qtbot.addWidget(window)
        made.append((window, controller, store, server))
        window.show()
        if wait_for_library:
            qtbot.waitUntil(lambda: window.models_page.table_model.rowCount() > 0, timeout=10_000)
        return window

    yield make
    for window, controller, store, server in made:
        window.close()
        server.shutdown()
        controller.shutdown()
        store.close()


@pytest.fixture
def window(make_window: Callable[..., MainWindow]) -> MainWindow:
    return make_window()


def close_window(window: MainWindow) -> None:
    window.close()
    window.engine.shutdown()
    window.store.close()

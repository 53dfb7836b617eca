"""GUI fixtures: a scripted fake engine, the assembled main window, and a QThread leak check."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.chats.store import ChatStore
from app.context import AppContext
from app.engine.types import (
    ChatMessage,
    EngineError,
    GenerationStats,
    LoadedModel,
    LoadParams,
    Reply,
)
from app.settings import Sampling
from ui.engine_controller import EngineController, live_controllers
from ui.main_window import MainWindow


class FakeEngine:
    """Streams scripted words; honours cancel between words like the real engine."""

    def __init__(self) -> None:
        self.words = ["Hello", " there", "!", " Here", " is", " **bold**", " text."]
        self.delay = 0.0
        self.fail_load = ""
        self.fail_after: int | None = None
        self._loaded: LoadedModel | None = None
        self.calls: list[list[ChatMessage]] = []
        self.prepared: list[list[ChatMessage]] = []
        self.interrupts = 0
        self.loads: list[str] = []

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def load(
        self, path: str, params: LoadParams, cancel: threading.Event | None = None
    ) -> LoadedModel:
        self.loads.append(path)
        if self.fail_load:
            raise EngineError(self.fail_load)
        self._loaded = LoadedModel(path, "Fake", params.context_length, "model", "model's own", 0)
        return self._loaded

    def unload(self) -> None:
        self._loaded = None

    def prepare(self, messages: list[ChatMessage]) -> None:
        self.prepared.append(list(messages))

    def interrupt(self) -> None:  # called from the GUI thread, as the Engine contract allows
        self.interrupts += 1

    def close(self) -> None:
        self._loaded = None

    def chat(
        self, messages: list[ChatMessage], sampling: Sampling, cancel: threading.Event
    ) -> Reply:
        self.calls.append(list(messages))
        stats = GenerationStats(prompt_tokens=10, prompt_tokens_evaluated=10)

        def gen() -> Iterator[str]:
            started = time.perf_counter()
            for i, word in enumerate(self.words):
                if cancel.is_set():
                    stats.stop_reason = "cancelled"
                    return
                if self.fail_after is not None and i == self.fail_after:
                    raise EngineError("llama.cpp failed while generating (error -3).")
                if self.delay:
                    time.sleep(self.delay)
                stats.generated_tokens += 1
                if i == 0:
                    stats.time_to_first_token = time.perf_counter() - started
                yield word
            stats.tokens_per_second = 42.0
            stats.stop_reason = "eos"

        return Reply(gen(), stats)


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
    made: list[tuple[MainWindow, EngineController, ChatStore]] = []

    def make(
        engine_factory: Callable[[], Any] | None = None, wait_for_library: bool = True
    ) -> MainWindow:
        ctx = AppContext.open()
        store = ChatStore(ctx.paths.chats_db)
        controller = EngineController(engine_factory or (lambda: fake_engine))
        window = MainWindow(ctx, store, controller)
        qtbot.addWidget(window)
        made.append((window, controller, store))
        window.show()
        if wait_for_library:
            qtbot.waitUntil(lambda: window.models_page.table_model.rowCount() > 0, timeout=10_000)
        return window

    yield make
    for window, controller, store in made:
        window.close()
        controller.shutdown()
        store.close()


@pytest.fixture
def window(make_window: Callable[..., MainWindow]) -> MainWindow:
    return make_window()


def close_window(window: MainWindow) -> None:
    window.close()
    window.engine.shutdown()
    window.store.close()

"""One engine in turns for the window and the API server (app/engine/shared.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from app.engine.shared import SharedEngine
from app.engine.types import ChatMessage, LoadParams
from app.settings import Sampling
from tests.fake_engine import FakeEngine

HI: list[ChatMessage] = [{"role": "user", "content": "hi"}]
PARAMS = LoadParams(context_length=512)


def test_a_reply_is_not_cut_off_by_another_seats_request() -> None:
    fake = FakeEngine()
    fake.delay = 0.02
    shared = SharedEngine(fake)
    window, api = shared.seat("window"), shared.seat("api")
    window.load("/models/a.gguf", PARAMS)
    api.load("/models/b.gguf", PARAMS)
    reply = window.chat(HI, Sampling(), threading.Event())
    words = iter(reply)
    first = next(words)  # the window's reply has its turn now
    assert shared.busy_with == "window"
    answered: list[str] = []
    other = threading.Thread(
        target=lambda: answered.append("".join(api.chat(HI, Sampling(), threading.Event())))
    )
    other.start()
    time.sleep(0.05)
    api.interrupt()  # the API's Stop does not reach the window's reply...
    assert fake.interrupts == 0
    text = first + "".join(words)
    assert text == "".join(fake.words)  # ...which ran to its end
    other.join(5)
    # The API's request had waited for its turn (and was told to stop while waiting).
    assert answered == [""]
    # Each seat replies with its own model: the engine switches when the turn passes.
    "".join(api.chat(HI, Sampling(), threading.Event()))
    "".join(window.chat(HI, Sampling(), threading.Event()))
    a, b = "/models/a.gguf", "/models/b.gguf"
    assert fake.loads == [a, b, a, b, a]


def test_one_model_wanted_by_both_loads_once_and_stays_while_wanted() -> None:
    fake = FakeEngine()
    shared = SharedEngine(fake)
    window, api = shared.seat("window"), shared.seat("api")
    window.load("/m.gguf", PARAMS)
    api.load("/m.gguf", PARAMS)
    "".join(api.chat(HI, Sampling(), threading.Event()))
    "".join(window.chat(HI, Sampling(), threading.Event()))
    assert fake.loads == ["/m.gguf"]
    api.unload()  # the server's idle unload: the window still uses it
    assert fake.loaded is not None
    api.close()
    window.close()  # the last seat closes the engine
    assert fake.loaded is None


def test_stop_while_waiting_for_the_turn_ends_without_a_word(tmp_path: Path) -> None:
    fake = FakeEngine()
    fake.delay = 0.05
    shared = SharedEngine(fake)
    window, api = shared.seat("window"), shared.seat("api")
    window.load("/m.gguf", PARAMS)
    api.load("/m.gguf", PARAMS)
    words = iter(window.chat(HI, Sampling(), threading.Event()))
    next(words)
    cancel = threading.Event()
    waiting = api.chat(HI, Sampling(), cancel)
    threading.Timer(0.1, cancel.set).start()
    started = time.monotonic()
    assert list(waiting) == []
    assert waiting.stats.stop_reason == "cancelled"
    assert time.monotonic() - started < 1
    list(words)

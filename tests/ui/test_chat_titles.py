"""A new chat's title, written by the model after its first reply."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.engine.types import ChatMessage, Reply, ReplyRules
from app.settings import Sampling
from tests.fake_engine import FakeEngine
from ui.main_window import MainWindow


class TitlingEngine(FakeEngine):
    """Answers a request for a title with ``title``, a word every ``title_delay`` seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ['"Quick', " Brown", " Fox", ' Jumps."']
        self.title_delay = 0.0
        self.titles_asked = 0

    def chat(
        self,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules | None = None,
    ) -> Reply:
        if "Write a title" not in messages[0]["content"]:
            return super().chat(messages, sampling, cancel)
        self.titles_asked += 1
        words, self.words = self.words, self.title
        delay, self.delay = self.delay, self.title_delay
        try:
            reply = super().chat(messages, sampling, cancel)
            return Reply(iter(list(reply)), reply.stats)  # written here, then handed over
        finally:
            self.words, self.delay = words, delay


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    page = window.chat_page
    page.input.setPlainText(text)
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)


def test_the_model_titles_a_new_chat_after_its_first_reply(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    fake_engine = TitlingEngine()
    fake_engine.title_delay = 0.05
    window = make_window(lambda: fake_engine, titles=True)
    fake_engine.words = ["Sure", ", here you go."]
    send(qtbot, window, "hey so I was wondering about the brown fox that jumps")
    assert window.conversations.index(0).data().startswith("hey so I was wondering")
    qtbot.waitUntil(lambda: window.conversations.index(0).data() == "Quick Brown Fox Jumps")
    asked = fake_engine.calls[-1]
    assert "title" in asked[0]["content"]
    assert "brown fox" in asked[0]["content"]
    title_sampling = fake_engine.requests[-1][0]
    assert title_sampling.max_tokens <= 32
    assert not title_sampling.enable_thinking
    page = window.chat_page
    assert page.conversation is not None
    assert window.store.conversation(page.conversation.id).title == "Quick Brown Fox Jumps"
    # Only the first reply: a second one leaves the title alone.
    send(qtbot, window, "and more")
    qtbot.wait(200)
    assert fake_engine.titles_asked == 1


def test_a_name_the_user_gave_is_kept(qtbot: QtBot, make_window: Callable[..., MainWindow]) -> None:
    fake_engine = TitlingEngine()
    fake_engine.title_delay = 0.1
    window = make_window(lambda: fake_engine, titles=True)
    send(qtbot, window, "first message")
    page = window.chat_page
    assert page.conversation is not None
    window.store.rename_conversation(page.conversation.id, "My own name")
    qtbot.waitUntil(lambda: fake_engine.titles_asked == 1)
    qtbot.wait(600)  # the title has been written by now
    assert window.store.conversation(page.conversation.id).title == "My own name"


def test_a_reply_asked_for_cancels_the_title_being_written(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    fake_engine = TitlingEngine()
    fake_engine.title = ["word "] * 100
    fake_engine.title_delay = 0.1  # 10 s
    window = make_window(lambda: fake_engine, titles=True)
    send(qtbot, window, "first message")
    qtbot.waitUntil(lambda: fake_engine.titles_asked == 1)
    started = time.monotonic()
    send(qtbot, window, "second message")
    assert time.monotonic() - started < 3  # the title gave way to the reply
    page = window.chat_page
    assert page.conversation is not None
    qtbot.wait(300)
    assert window.store.conversation(page.conversation.id).title == "first message"

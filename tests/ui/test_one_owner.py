"""Defects that came from state mirrored in several places: which model a chat uses, which
one the engine holds, whose reply is streaming. One owner each; screens observe them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from tests.fake_engine import FakeEngine
from ui.item_models import ConversationRole
from ui.main_window import MainWindow


def test_chat_after_a_download_talks_to_the_new_model(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine, make_model: Callable[..., Path]
) -> None:
    new = make_model("fresh.gguf", folder=window.ctx.paths.models_dir / "acme" / "Fresh-GGUF")
    window.chat_with(str(new))  # the Downloads page's Chat button
    page = window.chat_page
    qtbot.waitUntil(lambda: page.picker.currentData() == str(new), timeout=5000)
    qtbot.waitUntil(lambda: window.engine.loaded_path == str(new), timeout=5000)
    assert "fresh" in page.view._empty.text()
    page.input.setPlainText("hello")
    with qtbot.waitSignal(window.engine.reply_finished, timeout=5000):
        page.send()
    assert fake_engine.loads[-1] == str(new)  # the starter was not loaded again
    assert page.conversation is not None
    assert page.conversation.model == str(new)
    assert window.store.messages(page.conversation.id)[1].model == "fresh"


def test_enter_right_after_launch_waits_for_the_model_and_goes(
    qtbot: QtBot, make_window: Callable[..., MainWindow], fake_engine: FakeEngine
) -> None:
    window = make_window(wait_for_library=False)
    page = window.chat_page
    page.input.setPlainText("typed at once")
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)
    assert fake_engine.calls[-1] == [{"role": "user", "content": "typed at once"}]
    assert "Add a model" not in page.status.text()


def test_enter_during_a_reply_waits_visibly_and_then_goes(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    fake_engine.words = [f" w{i}" for i in range(60)]
    fake_engine.delay = 0.01
    page = window.chat_page
    page.input.setPlainText("first")
    page.send()
    page.input.setPlainText("second")
    qtbot.keyClick(page.input, Qt.Key.Key_Return)
    assert "is sent when the reply" in page.status.text()
    assert page.input.toPlainText() == "second"  # nothing lost
    qtbot.waitUntil(lambda: len(fake_engine.calls) == 2, timeout=10_000)
    assert fake_engine.calls[-1][-1] == {"role": "user", "content": "second"}
    assert page.input.toPlainText() == ""
    qtbot.waitUntil(lambda: not window.engine.generating, timeout=10_000)
    assert page.conversation is not None
    saved = window.store.messages(page.conversation.id)
    assert [m.content for m in saved if m.role == "user"] == ["first", "second"]


def test_the_busy_chat_is_marked_and_a_new_chat_shows_send(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    fake_engine.words = [f" w{i}" for i in range(100)]
    fake_engine.delay = 0.01
    page = window.chat_page
    page.input.setPlainText("busy one")
    page.send()
    assert page.send_button.text() == "Stop"
    row = window.conversations.index(0)
    assert row.data(ConversationRole.Replying) is True
    assert row.data().startswith("● ")  # at the start: long titles are elided at the end
    assert "Replying" in row.data(Qt.ItemDataRole.ToolTipRole)
    window.new_chat()
    assert page.send_button.text() == "Send"  # Stop belonged to the other chat's reply
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        pass
    assert window.conversations.index(0).data(ConversationRole.Replying) is False


def test_switching_chats_during_a_reply_keeps_picker_and_engine_together(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine, make_model: Callable[..., Path]
) -> None:
    page = window.chat_page
    x = page.current_model_path()
    y = str(make_model("other.gguf", folder=window.ctx.paths.models_dir / "acme" / "Other"))
    window.refresh_library()
    qtbot.waitUntil(lambda: page.picker.findData(y) >= 0, timeout=5000)
    page.choose_model(y)
    page.input.setPlainText("chat b")
    with qtbot.waitSignal(window.engine.reply_finished, timeout=5000):
        page.send()
    chat_b = page.conversation
    window.new_chat()
    page.choose_model(x)
    fake_engine.words = [f" w{i}" for i in range(100)]
    fake_engine.delay = 0.01
    page.input.setPlainText("chat a")
    page.send()
    chat_a = page.conversation
    assert chat_a is not None
    assert chat_b is not None
    window.open_conversation(chat_b.id)  # while A replies
    assert page.picker.currentData() == y
    window.open_conversation(chat_a.id)
    with qtbot.waitSignal(window.engine.reply_finished, timeout=5000):
        qtbot.keyClick(page, Qt.Key.Key_Escape)
    qtbot.wait(100)
    assert page.picker.currentData() == x
    assert window.engine.loaded_path == x
    assert fake_engine.loads[-1] == x

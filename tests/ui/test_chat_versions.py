"""A conversation's versions in the window: regenerate, edit, "‹ 2/3 ›", continue, delete."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from tests.fake_engine import FakeEngine
from tests.ui.conftest import close_window
from ui.chat_view import MessageWidget
from ui.main_window import MainWindow


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    page = window.chat_page
    page.input.setPlainText(text)
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)


def shown(window: MainWindow) -> list[tuple[str, str]]:
    return [(w.role, w._source) for w in window.chat_page.view.message_widgets()]


def widget(window: MainWindow, row: int) -> MessageWidget:
    return window.chat_page.view.message_widgets()[row]


def click(qtbot: QtBot, window: MainWindow, button: object) -> None:
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # type: ignore[arg-type]


def test_regenerate_keeps_the_old_reply_as_a_version(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    send(qtbot, window, "Tell me a joke")
    first = shown(window)[1][1]
    fake_engine.words = ["Another", " one."]
    reply = widget(window, 1)
    assert reply.action_bar.regenerate_button.isVisible()
    assert not reply.action_bar.position.isVisible()  # one version: no "‹ 1/1 ›"
    click(qtbot, window, reply.action_bar.regenerate_button)
    assert shown(window) == [("user", "Tell me a joke"), ("assistant", "Another one.")]
    assert fake_engine.calls[-1] == [{"role": "user", "content": "Tell me a joke"}]
    actions = widget(window, 1).action_bar
    assert actions.position.isVisible()
    assert actions.position.text() == "2/2"
    qtbot.mouseClick(actions.previous_button, Qt.MouseButton.LeftButton)
    assert shown(window)[1][1] == first
    assert widget(window, 1).action_bar.position.text() == "1/2"


def test_edit_a_message_sends_a_new_version_and_the_choice_survives_a_restart(
    qtbot: QtBot, make_window: Callable[..., MainWindow], fake_engine: FakeEngine
) -> None:
    window = make_window()
    send(qtbot, window, "What is 2+2?")
    send(qtbot, window, "And 3+3?")
    user = widget(window, 0)
    qtbot.mouseClick(user.action_bar.edit_button, Qt.MouseButton.LeftButton)
    assert user.editor is not None
    assert user.editor.box.toPlainText() == "What is 2+2?"
    user.editor.box.setPlainText("What is 5+5?")
    fake_engine.words = ["Ten."]
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(user.editor.box, Qt.Key.Key_Return)
    # The new version has only its own reply after it; the old one keeps its follow-up.
    assert shown(window) == [("user", "What is 5+5?"), ("assistant", "Ten.")]
    assert fake_engine.calls[-1] == [{"role": "user", "content": "What is 5+5?"}]
    assert widget(window, 0).action_bar.position.text() == "2/2"
    qtbot.mouseClick(widget(window, 0).action_bar.previous_button, Qt.MouseButton.LeftButton)
    assert [text for _, text in shown(window)][::2] == ["What is 2+2?", "And 3+3?"]
    conversation = window.chat_page.conversation
    assert conversation is not None
    close_window(window)

    again = make_window()
    again.open_conversation(conversation.id)
    assert [text for _, text in shown(again)][::2] == ["What is 2+2?", "And 3+3?"]
    assert widget(again, 0).action_bar.position.text() == "1/2"


def test_escape_cancels_an_edit(qtbot: QtBot, window: MainWindow) -> None:
    send(qtbot, window, "Keep me")
    user = widget(window, 0)
    user.start_editing()
    assert user.editor is not None
    user.editor.box.setPlainText("Changed")
    qtbot.keyClick(user.editor.box, Qt.Key.Key_Escape)
    assert user.editor is None
    assert shown(window)[0] == ("user", "Keep me")
    assert window.chat_page.messages.rowCount() == 2


def test_up_in_an_empty_box_edits_the_last_message(qtbot: QtBot, window: MainWindow) -> None:
    send(qtbot, window, "one")
    send(qtbot, window, "two")
    page = window.chat_page
    qtbot.keyClick(page.input, Qt.Key.Key_Up)
    last_user = widget(window, 2)
    assert last_user.editor is not None
    assert last_user.editor.box.toPlainText() == "two"
    assert widget(window, 0).editor is None


def test_continue_a_reply_cut_by_the_token_limit(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    send(qtbot, window, "Write a story")
    page = window.chat_page
    assert page.conversation is not None
    reply = page.store.messages(page.conversation.id)[1]
    stats = dict(reply.stats, stop_reason="length")
    page.store.update_message(reply.id, stats=stats)
    page.open_conversation(page.conversation.id)
    button = widget(window, 1).action_bar.continue_button
    qtbot.waitUntil(button.isVisible)  # new widgets in a shown window appear a moment later
    fake_engine.words = [" And", " then", " the", " end."]
    click(qtbot, window, button)
    text = "Hello there! Here is **bold** text. And then the end."
    assert shown(window) == [("user", "Write a story"), ("assistant", text)]
    saved = page.store.messages(page.conversation.id)
    assert len(saved) == 2
    assert saved[1].content == text
    # The engine was asked for the text after the prompt and the reply so far.
    assert fake_engine.calls[-1][-1]["content"].endswith("<assistant>" + reply.content)
    assert not widget(window, 1).action_bar.continue_button.isVisible()


def test_delete_a_message_and_what_follows_after_asking(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    send(qtbot, window, "first")
    send(qtbot, window, "second")
    asked: list[str] = []

    def answer(*args: object) -> QMessageBox.StandardButton:
        asked.append(str(args[2]))
        return QMessageBox.StandardButton.No if len(asked) == 1 else QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    qtbot.mouseClick(widget(window, 1).action_bar.delete_button, Qt.MouseButton.LeftButton)
    assert len(shown(window)) == 4  # "No": nothing deleted
    qtbot.mouseClick(widget(window, 1).action_bar.delete_button, Qt.MouseButton.LeftButton)
    assert "2 after it" in asked[-1]
    assert shown(window) == [("user", "first")]
    page = window.chat_page
    assert page.conversation is not None
    assert [m.content for m in page.store.messages(page.conversation.id)] == ["first"]


def test_nothing_changes_the_conversation_while_a_reply_streams(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    send(qtbot, window, "first")
    fake_engine.delay = 0.2
    page = window.chat_page
    page.input.setPlainText("second")
    qtbot.keyClick(page.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.engine.generating)
    first_reply = widget(window, 1).action_bar
    assert not first_reply.regenerate_button.isEnabled()
    assert not first_reply.delete_button.isEnabled()
    assert not widget(window, 3).action_bar.regenerate_button.isVisible()  # the streaming one
    page.regenerate(widget(window, 1).message_id)  # a shortcut past the disabled button
    assert "Wait for the reply" in page.status.text()
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        page.stop()
    assert first_reply.regenerate_button.isEnabled()


def test_a_reply_still_being_revealed_is_shown_whole_when_the_next_one_starts(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    """A fast engine outruns the view (it reveals 400 characters a pass); a message sent, or a
    reply regenerated, at once must not leave the earlier reply half shown and unfinished."""
    fake_engine.words = ["word "] * 1000
    page = window.chat_page
    page.input.setPlainText("first")
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)
    assert page._stream is not None  # still revealing the 5,000 characters
    fake_engine.words = ["Short."]
    page.input.setPlainText("second")
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        page.send()
    first = page.messages.items()[1]
    assert first.content == "word " * 1000
    assert first.status == "complete"
    assert "tokens/s" in widget(window, 1).footer.text()
    qtbot.waitUntil(lambda: page._stream is None)
    assert [m.content for m in page.messages.items()][2:] == ["second", "Short."]

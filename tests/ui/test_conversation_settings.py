"""Chat settings: a conversation's own sampling, system prompt (with presets) and thinking, as the
window's panel edits them and as the engine receives them with the chat's next reply."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox
from pytestqt.qtbot import QtBot

from app.engine.types import ChatMessage, LoadedModel, LoadParams
from app.settings import Sampling
from tests.fake_engine import FakeEngine
from tests.ui.conftest import close_window
from ui.conversation_settings import ConversationSettingsDialog
from ui.main_window import MainWindow


class ReasoningEngine(FakeEngine):
    """A fake engine whose model's chat template has a thinking switch (as Qwen 3's)."""

    def load(self, path: str, params: LoadParams, cancel: Any = None) -> LoadedModel:
        return replace(super().load(path, params, cancel), thinking_switch=True)


Reply = tuple[list[ChatMessage], Sampling]


def spy_on_replies(monkeypatch: pytest.MonkeyPatch, window: MainWindow) -> list[Reply]:
    """What each reply the window asks the engine controller for is sent with (a chat's title,
    which the model writes after its first reply, is not a reply)."""
    replies: list[Reply] = []
    generate = window.engine.generate

    def spy(messages: list[ChatMessage], sampling: Sampling, *args: Any) -> None:
        replies.append((messages, sampling))
        generate(messages, sampling, *args)

    monkeypatch.setattr(window.engine, "generate", spy)
    return replies


@pytest.fixture
def replies(monkeypatch: pytest.MonkeyPatch, window: MainWindow) -> list[Reply]:
    return spy_on_replies(monkeypatch, window)


def send(qtbot: QtBot, window: MainWindow, text: str) -> int:
    page = window.chat_page
    page.input.setPlainText(text)
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)
    assert page.conversation is not None
    return page.conversation.id


def panel(window: MainWindow) -> ConversationSettingsDialog:
    """The chat settings of the chat shown, opened with the top bar's button."""
    page = window.chat_page
    page.settings_button.click()
    assert page.chat_settings.isVisible()
    return page.chat_settings


def type_into(qtbot: QtBot, dialog: ConversationSettingsDialog, key: str, text: str) -> None:
    field = dialog.fields[key]
    field.clear()
    qtbot.keyClicks(field, text)


def test_temperature_set_in_one_chat_is_used_for_its_replies_only(
    qtbot: QtBot, window: MainWindow, replies: list[Reply], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = send(qtbot, window, "first chat")
    window.new_chat()
    second = send(qtbot, window, "second chat")
    window.open_conversation(first)
    dialog = panel(window)
    assert dialog.fields["temperature"].text() == ""
    assert dialog.fields["temperature"].placeholderText() == "0.7 (default)"
    assert dialog.fields["seed"].placeholderText() == "Random (default)"
    assert dialog.fields["context_length"].placeholderText() == "Automatic (default)"
    type_into(qtbot, dialog, "temperature", "0.2")
    # Enter closes the panel, which saves what was typed (it does not ask for a preset's name).
    monkeypatch.setattr(QInputDialog, "getText", lambda *_a, **_k: pytest.fail("asked a name"))
    qtbot.keyClick(dialog.fields["temperature"], Qt.Key.Key_Return)
    assert not dialog.isVisible()

    send(qtbot, window, "again in the first")
    assert replies[-1][1].temperature == pytest.approx(0.2)
    assert replies[-1][1].top_p == window.ctx.settings.sampling.top_p  # the rest: defaults
    window.open_conversation(second)
    send(qtbot, window, "again in the second")
    assert replies[-1][1].temperature == pytest.approx(0.7)
    assert panel(window).fields["temperature"].text() == ""  # the second chat set nothing


def test_a_value_out_of_range_is_refused_with_a_reason(
    qtbot: QtBot, window: MainWindow, replies: list[Reply]
) -> None:
    chat = send(qtbot, window, "hello")
    dialog = panel(window)
    type_into(qtbot, dialog, "temperature", "9")
    assert dialog.error.isVisible()
    assert "Temperature must be from 0 to 5" in dialog.error.text()
    assert dialog.fields["temperature"].property("invalid") is True
    type_into(qtbot, dialog, "top_k", "many")
    assert dialog.error.text() == "Top K must be a whole number."
    dialog.reject()
    assert window.store.chat_settings(chat).is_default
    send(qtbot, window, "next")
    assert replies[-1][1].temperature == pytest.approx(0.7)


def test_reset_to_defaults_empties_the_fields_and_the_chat_follows_settings_again(
    qtbot: QtBot, window: MainWindow, replies: list[Reply]
) -> None:
    chat = send(qtbot, window, "hello")
    dialog = panel(window)
    type_into(qtbot, dialog, "temperature", "1.3")
    type_into(qtbot, dialog, "top_k", "5")
    type_into(qtbot, dialog, "max_tokens", "77")
    dialog.flush()
    assert window.store.chat_settings(chat).top_k == 5
    qtbot.mouseClick(dialog.reset_button, Qt.MouseButton.LeftButton)
    assert all(f.text() == "" for f in dialog.fields.values())
    assert window.store.chat_settings(chat).is_default
    dialog.reject()
    window.ctx.settings.sampling.temperature = 0.4  # a default changed in Settings reaches it
    send(qtbot, window, "after the reset")
    sampling = replies[-1][1]
    assert (sampling.temperature, sampling.top_k, sampling.max_tokens) == (0.4, 40, 1024)


def test_a_saved_preset_picked_for_a_new_chat_becomes_its_system_prompt(
    qtbot: QtBot,
    window: MainWindow,
    replies: list[Reply],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    send(qtbot, window, "an older chat")
    dialog = panel(window)
    dialog.prompt.setPlainText("Answer like a pirate.")
    monkeypatch.setattr(QInputDialog, "getText", lambda *_a, **_k: ("Pirate", True))
    qtbot.mouseClick(dialog.save_preset, Qt.MouseButton.LeftButton)
    assert [p.name for p in window.store.presets.all()] == ["Pirate"]
    assert dialog.preset.currentText() == "Pirate"
    dialog.reject()

    window.new_chat()
    dialog = panel(window)
    assert dialog.prompt.toPlainText() == ""  # new chats get Settings' default: none
    assert dialog.preset.currentText() == "No preset"
    dialog.preset.setCurrentIndex(dialog.preset.findText("Pirate"))
    dialog.preset.activated.emit(dialog.preset.currentIndex())
    assert dialog.prompt.toPlainText() == "Answer like a pirate."
    dialog.reject()
    chat = send(qtbot, window, "Where is the treasure?")
    assert replies[-1][0][0] == {"role": "system", "content": "Answer like a pirate."}
    saved = window.store.conversation(chat)
    assert saved is not None
    assert saved.system_prompt == "Answer like a pirate."

    window.new_chat()  # the next new chat starts from the defaults again
    assert panel(window).prompt.toPlainText() == ""


def test_the_default_preset_starts_every_new_chat(
    qtbot: QtBot, window: MainWindow, replies: list[Reply]
) -> None:
    window.store.presets.save("Brief", "Be brief.")
    dialog = panel(window)
    dialog.preset.setCurrentIndex(dialog.preset.findText("Brief"))
    dialog.preset.activated.emit(dialog.preset.currentIndex())
    dialog.make_default.click()
    default = window.store.presets.default()
    assert default is not None
    assert default.name == "Brief"
    assert dialog.preset.currentText() == "Brief (default)"
    dialog.reject()
    send(qtbot, window, "hi")
    window.new_chat()
    send(qtbot, window, "hi again")
    assert replies[-1][0][0] == {"role": "system", "content": "Be brief."}


def test_editing_and_deleting_a_preset(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = send(qtbot, window, "hello")
    window.store.presets.save("Tutor", "Explain step by step.")
    dialog = panel(window)
    dialog.preset.setCurrentIndex(dialog.preset.findText("Tutor"))
    dialog.preset.activated.emit(dialog.preset.currentIndex())
    assert not dialog.update_preset.isEnabled()  # nothing to save into it yet
    dialog.prompt.setPlainText("Explain step by step, with an example.")
    assert dialog.update_preset.isEnabled()
    qtbot.mouseClick(dialog.update_preset, Qt.MouseButton.LeftButton)
    monkeypatch.setattr(QInputDialog, "getText", lambda *_a, **_k: ("Patient tutor", True))
    qtbot.mouseClick(dialog.rename_preset, Qt.MouseButton.LeftButton)
    [preset] = window.store.presets.all()
    assert (preset.name, preset.text) == ("Patient tutor", "Explain step by step, with an example.")

    monkeypatch.setattr(QMessageBox, "question", lambda *_a: QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(dialog.delete_preset, Qt.MouseButton.LeftButton)
    assert window.store.presets.all() == []
    assert [dialog.preset.itemText(i) for i in range(dialog.preset.count())] == ["No preset"]
    assert not dialog.delete_preset.isEnabled()
    dialog.reject()
    saved = window.store.conversation(chat)
    assert saved is not None
    assert saved.system_prompt == "Explain step by step, with an example."  # the chat keeps it


def test_settings_survive_reopening_the_window(
    qtbot: QtBot, make_window: Callable[..., MainWindow], monkeypatch: pytest.MonkeyPatch
) -> None:
    window = make_window()
    chat = send(qtbot, window, "hello")
    dialog = panel(window)
    type_into(qtbot, dialog, "temperature", "0.25")
    type_into(qtbot, dialog, "context_length", "2048")
    dialog.prompt.setPlainText("Speak French.")
    dialog.reject()
    close_window(window)

    again = make_window()
    replies = spy_on_replies(monkeypatch, again)
    again.open_conversation(chat)
    dialog = panel(again)
    assert dialog.fields["temperature"].text() == "0.25"
    assert dialog.fields["context_length"].text() == "2048"
    assert dialog.fields["top_p"].text() == ""
    assert dialog.prompt.toPlainText() == "Speak French."
    dialog.reject()
    send(qtbot, again, "bonjour")
    messages, sampling = replies[-1]
    assert sampling.temperature == pytest.approx(0.25)
    assert messages[0] == {"role": "system", "content": "Speak French."}


def test_thinking_off_and_a_budget_go_with_the_reply(
    qtbot: QtBot, make_window: Callable[..., MainWindow], monkeypatch: pytest.MonkeyPatch
) -> None:
    window = make_window(ReasoningEngine)
    replies = spy_on_replies(monkeypatch, window)
    dialog = panel(window)  # a new chat: what is set here is saved with it
    qtbot.waitUntil(lambda: dialog.thinking.isEnabled())  # the model loaded: it has the switch
    assert dialog.thinking.isChecked()
    type_into(qtbot, dialog, "thinking_budget", "64")
    dialog.reject()
    chat = send(qtbot, window, "think about it")
    _messages, sampling = replies[-1]
    assert (sampling.enable_thinking, sampling.thinking_budget) == (True, 64)
    assert window.store.chat_settings(chat).thinking_budget == 64

    dialog = panel(window)
    dialog.thinking.click()
    assert not dialog.fields["thinking_budget"].isEnabled()  # no thinking: nothing to budget
    dialog.reject()
    send(qtbot, window, "answer at once")
    _messages, sampling = replies[-1]
    assert not sampling.enable_thinking


def test_thinking_cannot_be_turned_off_where_the_template_has_no_switch(
    qtbot: QtBot, window: MainWindow
) -> None:
    send(qtbot, window, "hello")  # the fake model's template has no switch
    dialog = panel(window)
    assert not dialog.thinking.isEnabled()
    assert "no switch for thinking" in dialog.thinking_note.text()
    assert dialog.fields["thinking_budget"].isEnabled()
    assert dialog.fields["thinking_budget"].placeholderText() == "No limit (default)"
    dialog.reject()


def test_the_button_shows_its_words_where_there_is_room_and_its_icon_in_a_narrow_window(
    qtbot: QtBot, window: MainWindow
) -> None:
    button = window.chat_page.settings_button
    window.resize(1200, 700)
    qtbot.waitUntil(lambda: button.toolButtonStyle() == Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    assert button.width() >= button.sizeHint().width()
    window.resize(700, 560)
    qtbot.waitUntil(lambda: button.toolButtonStyle() == Qt.ToolButtonStyle.ToolButtonIconOnly)
    right = button.mapTo(window, button.rect().topRight()).x()
    assert right <= window.width()
    assert button.accessibleName() == "Chat settings"


def test_every_control_is_reached_with_tab(qtbot: QtBot, window: MainWindow) -> None:
    dialog = panel(window)
    dialog.preset.setFocus()
    reached = []
    for _ in range(40):
        qtbot.keyClick(dialog.focusWidget(), Qt.Key.Key_Tab)
        reached.append(dialog.focusWidget())
    wanted = [dialog.prompt, dialog.save_preset, dialog.thinking, dialog.reset_button]
    wanted += list(dialog.fields.values())
    assert all(w in reached for w in wanted if w.isEnabled())
    assert dialog.prompt.toPlainText() == ""  # Tab moved on; it typed no tab into the prompt
    dialog.reject()


def test_a_chat_with_its_own_context_length_loads_the_model_with_it(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = send(qtbot, window, "first chat")
    window.new_chat()
    second = send(qtbot, window, "second chat")
    window.open_conversation(first)
    dialog = panel(window)
    type_into(qtbot, dialog, "context_length", "2048")
    monkeypatch.setattr(QInputDialog, "getText", lambda *_a, **_k: pytest.fail("asked a name"))
    qtbot.keyClick(dialog.fields["context_length"], Qt.Key.Key_Return)
    loads = len(fake_engine.loads)
    send(qtbot, window, "again in the first")
    assert len(fake_engine.loads) == loads + 1  # loaded again, with the chat's length
    assert fake_engine.loaded is not None
    assert fake_engine.loaded.context_length == 2048
    assert window.chat_page.context_meter.text().endswith("/ 2,048 tokens")
    send(qtbot, window, "once more")
    assert len(fake_engine.loads) == loads + 1  # the same length: not loaded again
    window.open_conversation(second)
    send(qtbot, window, "in the second")
    assert fake_engine.loaded is not None
    assert window.ctx.settings.context_length == 0  # Automatic: the starter model's 8,192
    assert fake_engine.loaded.context_length == 8192

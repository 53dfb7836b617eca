"""The sidebar's conversations: search over every chat, pin, delete with Undo, export, import."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QMenu, QWidget
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

import ui.conversation_list
from app.chats.store import ChatStore
from tests.app.test_chats_transfer import CONVERSATIONS_JSON, _content, _rich_conversation
from ui.chat_transfer import HEARTH_JSON, MARKDOWN, export_format
from ui.conversation_list import ConversationPanel
from ui.item_models import ConversationListModel, ConversationRole
from ui.main_window import MainWindow
from ui.search_results import SearchHitListModel, SearchHitRole


def _chat(store: ChatStore, title: str, *texts: str) -> int:
    c = store.create_conversation(title)
    for i, text in enumerate(texts):
        store.add_message(c.id, "user" if i % 2 == 0 else "assistant", text)
    return c.id


def _titles(window: MainWindow) -> list[str]:
    model = window.conversations
    return [model.index(r).data(Qt.ItemDataRole.EditRole) for r in range(model.rowCount())]


def _row(window: MainWindow, conversation_id: int) -> int:
    return window.conversations.row_of(conversation_id)


def _menu_action(panel: ConversationPanel, conversation_id: int, text: str) -> None:
    menu = panel.conversation_menu(panel.model.index(panel.model.row_of(conversation_id)))
    [action] = [a for a in menu.actions() if a.text() == text]
    action.trigger()
    menu.deleteLater()


def _search(qtbot: QtBot, panel: ConversationPanel, text: str, hits: int) -> None:
    panel.focus_search()
    qtbot.keyClicks(panel.search, text)
    qtbot.waitUntil(lambda: panel.hits.rowCount() == hits and "“" in panel.results_label.text())
    assert panel.search.text() == text


def _activate(qtbot: QtBot, window: MainWindow) -> None:
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)


def _shown(window: MainWindow) -> list[str]:
    return [m.content for m in window.chat_page.messages.items()]


def _hidden_branch_chat(store: ChatStore) -> tuple[int, int]:
    """A chat whose reply was regenerated: the word is only in the older, hidden version."""
    c = store.create_conversation("Lighthouses")
    question = store.add_message(c.id, "user", "Tell me about Cabo da Roca")
    older = store.add_message(c.id, "assistant", "Its lighthouse <b>shines</b> & turns since 1772.")
    store.add_message(c.id, "assistant", "It is the westernmost cape.", parent_id=question.id)
    return c.id, older.id


def test_search_opens_another_conversation_at_the_hit_on_its_branch(
    qtbot: QtBot, window: MainWindow
) -> None:
    store = window.store
    target, hit_id = _hidden_branch_chat(store)
    other = _chat(store, "Bread", "How long to proof?", "About two hours.")
    window.open_conversation(other)
    panel = window.conversation_panel
    assert _shown(window) == ["How long to proof?", "About two hours."]
    _search(qtbot, panel, "lighthouse", hits=1)
    assert panel.stack.currentWidget() is not panel.view  # the hits replace the list
    hit = panel.hits.index(0)
    assert hit.data(SearchHitRole.Title) == "Lighthouses"
    # The match is bold; the message's own markup is shown as typed, not as markup.
    assert "<b>lighthouse</b>" in hit.data(SearchHitRole.Snippet)
    assert "&lt;b&gt;shines&lt;/b&gt; &amp; turns" in hit.data(SearchHitRole.Snippet)
    assert panel.results_label.text() == "1 message with “lighthouse”:"

    qtbot.keyClick(panel.search, Qt.Key.Key_Return)  # Enter opens the (first) hit

    assert window.chat_page.conversation is not None
    assert window.chat_page.conversation.id == target
    assert "Its lighthouse <b>shines</b> & turns since 1772." in _shown(window)
    assert window.pages.currentWidget() is window.chat_page
    assert window.conversation_list.currentIndex().data(ConversationRole.Id) == target
    assert store.messages(target)[-1].id == hit_id  # the branch stays chosen, as shown

    # Esc empties the search and the list is back, the opened chat highlighted.
    panel.search.setFocus()
    qtbot.keyClick(panel.search, Qt.Key.Key_Escape)
    assert panel.search.text() == ""
    assert panel.stack.currentWidget() is panel.view


def test_clicking_a_hit_has_the_chat_page_reveal_the_message(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = window.store
    target, hit_id = _hidden_branch_chat(store)
    _chat(store, "Bread", "How long to proof?", "About two hours.")
    window.reload_conversations()
    revealed: list[int] = []
    reveal = window.chat_page.reveal_message

    def reveal_message(message_id: int) -> None:
        revealed.append(message_id)
        reveal(message_id)

    monkeypatch.setattr(window.chat_page, "reveal_message", reveal_message)
    panel = window.conversation_panel
    _search(qtbot, panel, "1772", hits=1)
    panel.results.clicked.emit(panel.hits.index(0))
    assert revealed == [hit_id]  # the chat page scrolls to it and marks it
    assert window.chat_page.conversation is not None
    assert window.chat_page.conversation.id == target
    assert window.conversation_list.currentIndex().data(ConversationRole.Id) == target


def test_ctrl_f_searches_newest_first_and_a_new_search_replaces_the_last(
    qtbot: QtBot, window: MainWindow
) -> None:
    store = window.store
    for i in range(3):
        _chat(store, f"Tides {i}", f"high tide number {i}")
    window.reload_conversations()
    _activate(qtbot, window)
    window.chat_page.input.setFocus()
    panel = window.conversation_panel
    qtbot.keyClick(window.chat_page.input, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.focusWidget() is panel.search
    qtbot.keyClicks(panel.search, "tide")
    qtbot.waitUntil(lambda: panel.hits.rowCount() == 3)
    assert [panel.hits.index(r).data(SearchHitRole.Title) for r in range(3)] == [
        "Tides 2",
        "Tides 1",
        "Tides 0",
    ]
    qtbot.keyClicks(panel.search, " number 1")
    qtbot.waitUntil(lambda: panel.hits.rowCount() == 1)
    assert panel.hits.index(0).data(SearchHitRole.Title) == "Tides 1"
    panel.search.setText("nothing like this")
    qtbot.waitUntil(
        lambda: panel.hits.rowCount() == 0 and "No message" in panel.results_label.text()
    )
    assert panel.results_label.text() == "No message mentions “nothing like this”."


def test_pin_moves_a_chat_to_the_top_and_stays_after_reopening(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window()
    store = window.store
    oldest = _chat(store, "Oldest", "first")
    _chat(store, "Middle", "second")
    _chat(store, "Newest", "third")
    window.reload_conversations()
    assert _titles(window) == ["Newest", "Middle", "Oldest"]

    _menu_action(window.conversation_panel, oldest, "Pin to the top")

    assert _titles(window) == ["Oldest", "Newest", "Middle"]
    assert window.conversations.index(0).data(ConversationRole.Pinned) is True
    assert window.conversations.index(0).data(Qt.ItemDataRole.AccessibleTextRole) == (
        "Oldest, pinned"
    )
    window.close()
    window.engine.shutdown()

    again = make_window()
    assert _titles(again) == ["Oldest", "Newest", "Middle"]
    assert again.conversations.index(0).data(ConversationRole.Pinned) is True
    _menu_action(again.conversation_panel, oldest, "Unpin")
    assert _titles(again) == ["Newest", "Middle", "Oldest"]


def test_delete_then_undo_brings_the_chat_back_with_its_messages(
    qtbot: QtBot, window: MainWindow
) -> None:
    store = window.store
    keep = _chat(store, "Keep me", "hello", "hi!", "how are you?", "fine")
    _chat(store, "Other", "unrelated")
    window.open_conversation(keep)
    panel = window.conversation_panel

    _menu_action(panel, keep, "Delete")

    assert "Keep me" not in _titles(window)
    assert window.chat_page.conversation is None  # the window left the deleted chat
    assert panel.undo_bar.isVisible()
    assert panel.undo_bar.message() == "Deleted “Keep me”"
    qtbot.mouseClick(panel.undo_bar.action, Qt.MouseButton.LeftButton)

    assert _titles(window) == ["Other", "Keep me"]
    assert not panel.undo_bar.isVisible()
    assert window.chat_page.conversation is not None
    assert window.chat_page.conversation.id == keep  # shown again, as before the delete
    assert _shown(window) == ["hello", "hi!", "how are you?", "fine"]
    assert window.conversation_list.currentIndex().data(ConversationRole.Id) == keep


def test_a_delete_not_undone_is_gone_for_good_when_the_offer_ends(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui.conversation_list, "UNDO_SECONDS", 0.2)
    store = window.store
    gone = _chat(store, "Gone", "bye")
    stays = _chat(store, "Stays", "hello")
    window.reload_conversations()
    panel = window.conversation_panel
    panel.view.setCurrentIndex(window.conversations.index(_row(window, gone)))
    panel.view.setFocus()
    qtbot.keyClick(panel.view, Qt.Key.Key_Delete)  # the Delete key does what the menu does
    assert _titles(window) == ["Stays"]
    qtbot.waitUntil(lambda: not panel.undo_bar.isVisible(), timeout=3000)
    assert store.conversation(gone) is None
    assert store.messages(gone) == []
    assert window.store.search("bye") == []

    # Deleted with Undo still offered, then the window closes: gone too.
    window.delete_conversation(stays)
    assert panel.undo_bar.isVisible()
    window.close()
    assert ChatStore(window.ctx.paths.chats_db).trashed_conversations() == []
    assert store.conversation(stays) is None


def test_a_second_delete_makes_the_first_final(qtbot: QtBot, window: MainWindow) -> None:
    store = window.store
    first = _chat(store, "First", "a")
    second = _chat(store, "Second", "b")
    window.reload_conversations()
    window.delete_conversation(first)
    window.delete_conversation(second)
    assert window.conversation_panel.undo_bar.message() == "Deleted “Second”"
    assert store.conversation(first) is None
    window.conversation_panel.undo_bar.action.click()
    assert _titles(window) == ["Second"]


def _save_as(monkeypatch: pytest.MonkeyPatch, path: Path, chosen: str) -> list[str]:
    asked: list[str] = []

    def get_save_file_name(parent: QWidget, caption: str, *args: Any) -> tuple[str, str]:
        asked.append(caption)
        return str(path), chosen

    monkeypatch.setattr(QFileDialog, "getSaveFileName", get_save_file_name)
    return asked


def _open(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: (str(path), ""))


def _notice(qtbot: QtBot, panel: ConversationPanel, start: str) -> str:
    qtbot.waitUntil(lambda: panel.notice.message().startswith(start), timeout=10_000)
    return panel.notice.message()


def test_export_all_then_import_elsewhere_round_trips(
    qtbot: QtBot,
    make_window: Callable[..., MainWindow],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    window = make_window()
    store = window.store
    _rich_conversation(store)
    _chat(store, "Plain", "hi", "hello")
    window.reload_conversations()
    panel = window.conversation_panel
    asked = _save_as(monkeypatch, tmp_path / "all chats", HEARTH_JSON)  # no extension typed
    panel.export_all_action.trigger()
    assert asked == ["Export all chats"]
    assert _notice(qtbot, panel, "Exported") == "Exported 2 conversations to all chats.json."
    exported = json.loads((tmp_path / "all chats.json").read_text(encoding="utf-8"))
    assert _content(exported) == _content(store.export())

    # One chat as Markdown, from its menu.
    _save_as(monkeypatch, tmp_path / "poems", MARKDOWN)
    _menu_action(panel, store.conversations()[0].id, "Export…")
    assert _notice(qtbot, panel, "Exported") == "Exported 1 conversation to poems.md."
    markdown = (tmp_path / "poems.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Sea poems")
    assert "Waves\nand more waves" in markdown

    # Another data folder (another computer): import the file through the window.
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path / "elsewhere"))
    other = make_window()
    assert _titles(other) == []
    _open(monkeypatch, tmp_path / "all chats.json")
    other.conversation_panel.import_action.trigger()
    said = _notice(qtbot, other.conversation_panel, "Imported")
    assert said == "Imported 2 conversations with 8 messages."
    assert _titles(other) == ["Sea poems", "Plain"]
    assert other.conversations.index(0).data(ConversationRole.Pinned) is True
    assert _content(other.store.export()) == _content(exported)
    # The same file again adds nothing.
    other.conversation_panel.import_action.trigger()
    assert _notice(qtbot, other.conversation_panel, "Nothing new") == (
        "Nothing new in all chats.json: its 2 conversations are here."
    )
    assert _titles(other) == ["Sea poems", "Plain"]


def test_a_chatgpt_export_imported_in_the_window_lists_its_chats(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    archive = tmp_path / "chatgpt-export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("chat.html", "<html></html>")
        z.writestr("conversations.json", json.dumps(CONVERSATIONS_JSON))
    _open(monkeypatch, archive)
    panel = window.conversation_panel
    panel.import_action.trigger()
    assert _notice(qtbot, panel, "Imported") == "Imported 3 conversations with 11 messages."
    assert _titles(window) == ["Prime check", "Sales chart", "Lisbon weekend"]
    assert window.conversations.index(0).data(ConversationRole.Pinned) is True
    panel.view.clicked.emit(window.conversations.index(2))
    assert _shown(window)[0] == "Plan a weekend in Lisbon."

    # A file that is no export says why, in the window.
    junk = tmp_path / "notes.json"
    junk.write_text('{"hello": 1}', encoding="utf-8")
    _open(monkeypatch, junk)
    panel.import_action.trigger()
    assert "neither a Hearth export nor ChatGPT" in _notice(qtbot, panel, "notes.json")
    assert len(_titles(window)) == 3


def test_export_format_follows_the_name_typed_or_the_filter() -> None:
    assert export_format("/x/chat", MARKDOWN) == (Path("/x/chat.md"), True)
    assert export_format("/x/chat", HEARTH_JSON) == (Path("/x/chat.json"), False)
    assert export_format("/x/chat.json", MARKDOWN) == (Path("/x/chat.json"), False)
    assert export_format("/x/chat.MD", HEARTH_JSON) == (Path("/x/chat.MD"), True)


def test_new_controls_have_names_and_are_reached_by_tab(qtbot: QtBot, window: MainWindow) -> None:
    store = window.store
    one = _chat(store, "One", "hello")
    _chat(store, "Two", "hello again")
    window.reload_conversations()
    panel = window.conversation_panel
    window.delete_conversation(one)  # the Undo bar shows
    panel._say("A notice")
    controls: list[QWidget] = [
        panel.search,
        panel.more,
        panel.view,
        panel.undo_bar.action,
        panel.undo_bar.close_button,
        panel.notice.close_button,
    ]
    for control in controls:
        assert control.accessibleName(), control
    assert panel.results.accessibleName() == "Search results"
    assert panel.undo_bar.action.accessibleName() == "Undo: Deleted “One”"
    # Tab from the search box visits each of them.
    reached: list[QWidget] = []
    widget: QWidget = panel.search
    for _ in range(40):
        widget = widget.nextInFocusChain()
        if (
            widget.focusPolicy() & Qt.FocusPolicy.TabFocus
            and widget.isVisible()
            and widget.isEnabled()
        ):
            reached.append(widget)
        if widget is panel.search:
            break
    for control in controls[1:]:
        assert control in reached, control.accessibleName()
    panel.search.setText("hello")
    qtbot.waitUntil(lambda: panel.hits.rowCount() == 1)
    assert panel.results.isVisible()
    assert panel.results.focusPolicy() & Qt.FocusPolicy.TabFocus
    _activate(qtbot, window)
    panel.search.setFocus()
    qtbot.keyClick(panel.search, Qt.Key.Key_Down)  # Down goes from the box to the hits
    assert QApplication.focusWidget() is panel.results
    qtbot.keyClick(panel.results, Qt.Key.Key_Escape)  # Esc: back to the box, emptied
    assert QApplication.focusWidget() is panel.search
    assert panel.search.text() == ""


def test_the_list_models_pass_the_model_tester(qtmodeltester: ModelTester, tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "chats.sqlite3")
    for i in range(4):
        _chat(store, f"Chat {i}", f"note {i} about tides")
    store.pin_conversation(store.conversations()[2].id)
    conversations = ConversationListModel()
    conversations.set_conversations(store.conversations())
    qtmodeltester.check(conversations, force_py=True)
    assert [conversations.index(r).data(ConversationRole.Pinned) for r in range(4)] == [
        True,
        False,
        False,
        False,
    ]
    hits = SearchHitListModel()
    hits.set_hits(store.search("tides"))
    qtmodeltester.check(hits, force_py=True)
    assert hits.rowCount() == 4
    store.close()


def test_a_menu_for_every_chat(qtbot: QtBot, window: MainWindow) -> None:
    store = window.store
    chat = _chat(store, "Menu", "hi")
    window.reload_conversations()
    panel = window.conversation_panel
    menu: QMenu = panel.conversation_menu(window.conversations.index(_row(window, chat)))
    assert [a.text() for a in menu.actions() if a.text()] == [
        "Pin to the top",
        "Rename…",
        "Export…",
        "Delete",
    ]
    assert [a.text() for a in panel.more_menu.actions()] == [
        "Export all chats…",
        "Import chats…",
    ]
    window.rename_conversation(chat, "Named")
    assert _titles(window) == ["Named"]
    window.rename_conversation(chat, "  ")  # empty: back to the first message's title
    assert _titles(window) == ["hi"]

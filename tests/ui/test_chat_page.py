from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.chats.store import ChatStore
from app.units import short_duration
from tests.fake_engine import FakeEngine
from ui.chat_page import TYPING_PAUSE_MS
from ui.main_window import MainWindow


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    page = window.chat_page
    page.input.setPlainText(text)
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)


def test_first_run_opens_new_chat_with_starter_selected(window: MainWindow) -> None:
    page = window.chat_page
    assert window.windowTitle() == "Hearth"
    assert page.conversation is None
    assert "SmolLM2" in page.picker.currentText()
    assert page.input.hasFocus()
    assert "Start a conversation" in page.view._empty.text()


def test_send_streams_reply_and_saves_it(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    send(qtbot, window, "Hi there")
    page = window.chat_page
    assert page.messages.rowCount() == 2
    widgets = page.view.message_widgets()
    assert "Hello there! Here is" in widgets[1].text.toPlainText()
    assert "bold" in widgets[1].text.toHtml()
    assert "font-weight" in widgets[1].text.toHtml()
    assert "tokens/s" in widgets[1].footer.text()
    assert "ms to first token" in widgets[1].footer.text()  # the fake engine is quick
    assert fake_engine.calls[-1] == [{"role": "user", "content": "Hi there"}]
    assert page.conversation is not None
    saved = window.store.messages(page.conversation.id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "complete")]
    assert saved[1].content == "Hello there! Here is **bold** text."
    assert saved[1].stats["generated_tokens"] == 7
    assert window.conversations.rowCount() == 1
    assert window.conversations.index(0).data() == "Hi there"
    assert page.input.toPlainText() == ""


def test_shift_enter_is_a_new_line(qtbot: QtBot, window: MainWindow) -> None:
    page = window.chat_page
    qtbot.keyClicks(page.input, "line one")
    qtbot.keyClick(page.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(page.input, "line two")
    assert page.input.toPlainText() == "line one\nline two"
    assert page.messages.rowCount() == 0


def test_follow_up_sends_history(qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine) -> None:
    send(qtbot, window, "first")
    send(qtbot, window, "second")
    assert [m["role"] for m in fake_engine.calls[-1]] == ["user", "assistant", "user"]
    assert fake_engine.calls[-1][-1]["content"] == "second"


def test_engine_prepares_the_next_message_ahead(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    """After the model loads (a new chat: its system prompt) and after each reply (the whole
    conversation), the engine is asked to evaluate what will precede the next message."""
    qtbot.waitUntil(lambda: bool(fake_engine.prepared))  # the model loaded with a new chat open
    assert fake_engine.prepared == [[]]  # no system prompt set: nothing precedes the message yet
    window.ctx.settings.default_system_prompt = "Be brief."
    send(qtbot, window, "first")
    qtbot.waitUntil(lambda: len(fake_engine.prepared) >= 2)
    after_reply = fake_engine.prepared[-1]
    assert after_reply == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Hello there! Here is **bold** text."},
    ]
    # A new chat: its system prompt, up to the first message.
    window.chat_page.open_conversation(None)
    qtbot.waitUntil(lambda: fake_engine.prepared[-1] == after_reply[:1])


def test_a_pause_in_typing_has_the_engine_prepare_the_message_so_far(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    qtbot.waitUntil(lambda: bool(fake_engine.prepared))  # the model loaded
    page = window.chat_page
    qtbot.keyClicks(page.input, "the fire ")
    qtbot.waitUntil(lambda: len(fake_engine.prepared) == 2)
    assert fake_engine.prepared[-1] == [{"role": "user", "content": "the fire"}]  # as sent
    qtbot.wait(2 * TYPING_PAUSE_MS)
    assert len(fake_engine.prepared) == 2  # once per pause, not once per key

    # Typed while the reply streams: nothing is prepared until it ends, then the draft with it.
    fake_engine.words = [f" w{i}" for i in range(40)]
    fake_engine.delay = 0.01
    page.send()
    qtbot.keyClicks(page.input, "and then")
    qtbot.waitUntil(lambda: page._stream is None, timeout=5000)
    qtbot.waitUntil(lambda: len(fake_engine.prepared) >= 3)
    reply = "".join(fake_engine.words)
    assert all(
        p[-2:] == [{"role": "assistant", "content": reply}, {"role": "user", "content": "and then"}]
        for p in fake_engine.prepared[2:]
    )


def test_reading_while_typing_can_be_turned_off(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    qtbot.waitUntil(lambda: bool(fake_engine.prepared))  # the model loaded
    window.settings_page.read_while_typing.setChecked(False)
    qtbot.keyClicks(window.chat_page.input, "the fire ")
    qtbot.wait(2 * TYPING_PAUSE_MS)
    # What precedes the next message may still be prepared; the draft is not read.
    assert all(not p or p[-1]["role"] != "user" for p in fake_engine.prepared)


def test_stop_mid_reply(qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine) -> None:
    fake_engine.words = [f" w{i}" for i in range(200)]
    fake_engine.delay = 0.01
    page = window.chat_page
    page.input.setPlainText("long please")
    page.send()
    assert page.send_button.text() == "Stop"
    qtbot.waitUntil(lambda: "w3" in page.messages.message(1).content, timeout=5000)
    with qtbot.waitSignal(window.engine.reply_finished, timeout=5000):
        qtbot.mouseClick(page.send_button, Qt.MouseButton.LeftButton)
    assert fake_engine.interrupts == 1  # told at once, besides the reply's cancel event
    assert page.send_button.text() == "Send"
    assert page.conversation is not None
    reply = window.store.messages(page.conversation.id)[1]
    assert reply.status == "interrupted"
    assert "w3" in reply.content
    assert "w199" not in reply.content
    assert "Stopped" in page.view.message_widgets()[1].footer.text()


def test_engine_error_is_shown_in_plain_words(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    fake_engine.fail_after = 2
    page = window.chat_page
    page.input.setPlainText("break")
    with qtbot.waitSignal(window.engine.reply_failed, timeout=5000):
        page.send()
    footer = page.view.message_widgets()[1].footer.text()
    assert "failed while generating" in footer
    assert page.conversation is not None
    reply = window.store.messages(page.conversation.id)[1]
    assert (reply.status, reply.content) == ("error", "Hello there")
    # The app still works afterwards.
    fake_engine.fail_after = None
    send(qtbot, window, "again")
    assert window.store.messages(page.conversation.id)[-1].status == "complete"


def test_load_failure_is_reported(
    qtbot: QtBot, make_window: Callable[..., MainWindow], fake_engine: FakeEngine
) -> None:
    fake_engine.fail_load = "The file is truncated: get it again."
    window = make_window()
    page = window.chat_page
    qtbot.waitUntil(lambda: "Could not load" in page.status.text(), timeout=5000)
    page.input.setPlainText("hello?")
    with qtbot.waitSignal(window.engine.reply_failed, timeout=5000):
        page.send()
    assert "truncated" in page.view.message_widgets()[1].footer.text()


def test_switching_conversations(qtbot: QtBot, window: MainWindow) -> None:
    send(qtbot, window, "about cats")
    window.new_chat()
    assert window.chat_page.messages.rowCount() == 0
    send(qtbot, window, "about dogs")
    assert window.conversations.rowCount() == 2
    row = next(r for r in range(2) if window.conversations.index(r).data() == "about cats")
    window.conversation_list.clicked.emit(window.conversations.index(row))
    texts = [w.text.toPlainText() for w in window.chat_page.view.message_widgets()]
    assert texts[0] == "about cats"


def test_reopened_window_has_history(qtbot: QtBot, make_window: Callable[..., MainWindow]) -> None:
    first = make_window()
    send(qtbot, first, "remember me")
    first.close()
    first.engine.shutdown()
    second = make_window()
    assert second.conversations.rowCount() == 1
    second.open_conversation(second.conversations.index(0).data(0x0101))
    assert next(m.content for m in second.chat_page.messages._items) == "remember me"


def test_rename_and_delete_conversation(qtbot: QtBot, window: MainWindow) -> None:
    send(qtbot, window, "temp")
    conv = window.chat_page.conversation
    assert conv is not None
    window.rename_conversation(conv.id, "Renamed")
    assert window.conversations.index(0).data() == "Renamed"
    window.delete_conversation(conv.id)
    assert window.conversations.rowCount() == 0
    assert window.chat_page.conversation is None
    assert ChatStore(window.ctx.paths.chats_db).conversations() == []


def test_long_conversation_shows_latest_first(qtbot: QtBot, window: MainWindow) -> None:
    store = window.store
    conv = store.create_conversation("long")
    for i in range(150):
        store.add_message(conv.id, "user" if i % 2 == 0 else "assistant", f"message {i}")
    window.open_conversation(conv.id)
    view = window.chat_page.view
    assert len(view.message_widgets()) == 60
    assert view.message_widgets()[-1].text.toPlainText().strip() == "message 149"
    assert view._more.isVisibleTo(window)
    view._more.click()
    assert len(view.message_widgets()) == 120
    assert view.message_widgets()[0].text.toPlainText().strip() == "message 30"


def test_long_reply_streams_in_chunks_and_copies_whole(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    paragraph = "A paragraph about **lighthouses** and the sea, long enough to matter. " * 6
    fake_engine.words = [paragraph + "\n\n"] * 30  # ~13,000 characters arrive in a burst
    page = window.chat_page
    page.input.setPlainText("long")
    page.send()
    qtbot.waitUntil(lambda: page._stream is None, timeout=10_000)
    widget = page.view.message_widgets()[1]
    # Longer than MERGE_LIMIT: it keeps the chunks it was revealed in over several frames.
    assert len(widget._frozen) >= 2
    source = "".join(fake_engine.words)
    assert widget.plain_text().count("lighthouses") == source.count("lighthouses")
    assert "**" not in widget.plain_text()  # rendered, not raw Markdown
    assert widget.copy_button.isVisibleTo(widget)
    widget.copy_button.click()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == source
    assert page.conversation is not None
    assert window.store.messages(page.conversation.id)[1].content == source
    # The engine prepared the next turn with the whole reply, though the view was still
    # revealing it when the reply ended.
    qtbot.waitUntil(lambda: bool(fake_engine.prepared))
    assert fake_engine.prepared[-1][-1] == {"role": "assistant", "content": source}


def test_finished_reply_becomes_one_document_for_selection(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    paragraph = "A paragraph about **lighthouses** and the sea. " * 4
    fake_engine.words = [paragraph + "\n\n"] * 30  # ~5,700 characters: several chunks
    fake_engine.delay = 0.005
    page = window.chat_page
    widgets = page.view.message_widgets
    most_chunks = [0]

    def count() -> None:
        if len(widgets()) > 1:
            most_chunks[0] = max(most_chunks[0], len(widgets()[1]._frozen))

    window.engine.reply_delta.connect(count)
    page.input.setPlainText("tell me")
    page.send()
    qtbot.waitUntil(lambda: page._stream is None, timeout=10_000)
    assert most_chunks[0] >= 2  # streamed in frozen chunks
    widget = widgets()[1]
    assert widget._frozen == []
    assert not any(
        isinstance(w, type(widget.text)) and w.isVisible() and w is not widget.text
        for w in widget.findChildren(type(widget.text))
    )
    widget.text.selectAll()
    selected = widget.text.textCursor().selectedText()
    assert selected.count("lighthouses") == 30 * 4  # one selection spans the whole reply


def test_streaming_reply_is_saved_while_it_streams(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    fake_engine.words = [f" w{i}" for i in range(1500)]  # ~15 s: still streaming when checked
    fake_engine.delay = 0.01
    page = window.chat_page
    page.input.setPlainText("stream slowly")
    page.send()
    assert page.conversation is not None
    conversation_id = page.conversation.id
    # A second connection, as a restarted app would have, sees the partial reply within ~1 s.
    reader = ChatStore(window.ctx.paths.chats_db)
    qtbot.waitUntil(lambda: "w20" in reader.messages(conversation_id)[1].content, timeout=8000)
    assert reader.messages(conversation_id)[1].status == "streaming"
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        page.stop()
    reader.close()


def test_times_in_the_footer_read_naturally() -> None:
    assert [short_duration(s) for s in (0.0004, 0.0123, 0.42, 3.5, 12.54)] == [
        "1 ms",
        "12 ms",
        "0.42 s",
        "3.50 s",
        "12.5 s",
    ]


def test_a_replys_prompt_shows_what_the_model_read(qtbot: QtBot, window: MainWindow) -> None:
    send(qtbot, window, "First question")
    send(qtbot, window, "Second question")
    page = window.chat_page
    replies = [w for w in page.view.message_widgets() if w.role == "assistant"]
    assert all(r.prompt_button.isVisibleTo(page) for r in replies)
    assert not page.view.message_widgets()[0].prompt_button.isVisibleTo(page)  # a user message
    with qtbot.waitSignal(window.engine.prompt_ready, timeout=5000):
        replies[1].prompt_button.click()
    dialog = page.prompt_dialog
    assert dialog.isVisible()
    text = dialog.text.toPlainText()
    # The conversation before the second reply, through the (fake) model's template.
    assert text.startswith("<user>First question</user><assistant>Hello there!")
    assert text.endswith("<user>Second question</user><assistant>")
    assert "the model's own chat template" in dialog.about.text()
    dialog.close()


def test_keyboard_and_copy_manners(qtbot: QtBot, window: MainWindow) -> None:
    from PySide6.QtGui import QGuiApplication

    send(qtbot, window, "First chat")
    window.new_chat()
    send(qtbot, window, "Second chat")
    # Enter on a chat in the list opens it (arrows alone only moved a highlight).
    listed = window.conversation_list
    first = next(
        window.conversations.index(r)
        for r in range(window.conversations.rowCount())
        if window.conversations.index(r).data() == "First chat"
    )
    listed.setFocus()
    listed.setCurrentIndex(first)
    qtbot.keyClick(listed, Qt.Key.Key_Return)
    page = window.chat_page
    assert page.conversation is not None
    assert page.conversation.title == "First chat"
    # Copy says it copied, on user messages too.
    user = page.view.message_widgets()[0]
    assert not user.copy_button.isHidden(), (user.role, user._source)
    user.copy_button.click()
    assert QGuiApplication.clipboard().text() == "First chat"
    assert user.copy_button.text() == "Copied ✓"
    qtbot.waitUntil(lambda: user.copy_button.text() == "Copy", timeout=3000)
    # Ctrl+, opens Settings and Ctrl+K the Hub search, its box focused.
    qtbot.keyClick(window, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    assert window.pages.currentIndex() == window.SETTINGS
    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    assert window.pages.currentIndex() == window.DISCOVER
    assert window.discover_page.query.hasFocus()

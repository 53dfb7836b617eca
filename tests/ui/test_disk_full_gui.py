"""A full disk while using the window: the message stays in the box unsent, the reply shown
whole says it is not saved, a settings change says once that it is not kept."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from tests.fake_engine import FakeEngine
from ui.main_window import MainWindow


def _fill(window: MainWindow) -> None:
    db = window.store._db
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")


def test_a_message_sent_on_a_full_disk_stays_in_the_box(qtbot: QtBot, window: MainWindow) -> None:
    page = window.chat_page
    _fill(window)
    text = "a message " * 2000
    page.input.setPlainText(text)
    qtbot.keyClick(page.input, Qt.Key.Key_Return)
    assert page.input.toPlainText().strip() == text.strip()
    assert "disk is full" in page.status.text()
    assert window.store.conversations() == []
    assert page.messages.rowCount() == 0


def test_a_reply_when_the_disk_fills_is_shown_and_said_unsaved(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    page = window.chat_page
    fake_engine.words = ["word " * 1000] * 3
    page.input.setPlainText("hello")
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)
        _fill(window)
    reply = page.view.message_widgets()[-1]
    qtbot.waitUntil(lambda: "Not saved: The disk is full" in reply.footer.text(), timeout=15_000)
    assert page.messages.items()[-1].content.count("word") == 3000  # all of it is in the view


def test_settings_on_a_full_disk_are_said_once(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def no_space(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("app.context.save_settings", no_space)
    for value in (3, 4, 5):
        window.settings_page.threads.setValue(value)
        window.settings_page.flush()
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1
    assert "could not be saved" in boxes[0].text()
    assert window.ctx.settings.threads == 5  # applies until Hearth quits
    boxes[0].close()

"""Ctrl+plus and Ctrl+minus make the window's text larger or smaller, and it is remembered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.settings import load_settings
from ui.main_window import MainWindow
from ui.theme import apply_text_size, text_size


@pytest.fixture
def app_font_restored(qapp: QApplication) -> Iterator[None]:
    sheet = qapp.styleSheet()
    yield
    apply_text_size(qapp, 0)
    qapp.setStyleSheet(sheet)  # the application outlives the test


def test_zoom_in_and_out_with_the_keyboard(
    qtbot: QtBot, window: MainWindow, qapp: QApplication, app_font_restored: None
) -> None:
    page = window.chat_page
    page.input.setPlainText("Hi")
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)
    reply = page.view.message_widgets()[1].text
    before, shown_before = text_size(qapp), reply.font().pointSizeF()
    qtbot.keyClick(window, Qt.Key.Key_Plus, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    assert text_size(qapp) == round(before) + 2
    qtbot.waitUntil(lambda: reply.font().pointSizeF() > shown_before)  # the chat follows
    saved = load_settings(window.ctx.paths.settings_file)
    assert saved.text_size == round(before) + 2
    qtbot.keyClick(window, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert text_size(qapp) == round(before) + 1
    qtbot.keyClick(window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert text_size(qapp) == before
    assert load_settings(window.ctx.paths.settings_file).text_size == 0


def test_zoom_stays_within_readable_sizes(
    window: MainWindow, qapp: QApplication, app_font_restored: None
) -> None:
    window._set_text_size(38)
    for _ in range(4):
        window.zoom_in()
    assert text_size(qapp) == 40
    window._set_text_size(8)
    for _ in range(4):
        window.zoom_out()
    assert text_size(qapp) == 6

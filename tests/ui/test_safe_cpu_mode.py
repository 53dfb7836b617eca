"""The window on a processor where llama.cpp's fast CPU kernels fault (injected in the engine
process): the first message is still answered, the reply says once that safe CPU mode is on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.engine.cpu_safety import safe_mode_notice
from ui.application import create_engine
from ui.main_window import MainWindow

pytestmark = pytest.mark.slow


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    page = window.chat_page
    qtbot.keyClicks(page.input, text)
    with qtbot.waitSignal(window.engine.reply_finished, timeout=60_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)


def test_first_message_is_answered_in_safe_mode_and_told_once(
    qtbot: QtBot, make_window: Callable[..., MainWindow], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEARTH_INJECT_CPU_FAULT", "evaluate")
    window = make_window(engine_factory=create_engine)
    window.ctx.settings.sampling.temperature = 0
    window.ctx.settings.sampling.max_tokens = 8
    page = window.chat_page
    send(qtbot, window, "Hello!")
    first = page.view.message_widgets()[1]
    assert first.plain_text().strip()  # answered, no error
    assert "safe CPU mode" in first.footer.text()
    assert page.conversation is not None
    saved = window.store.messages(page.conversation.id)
    assert saved[1].status == "complete"
    assert (
        saved[1].stats["notice"] == safe_mode_notice()
    )  # kept with the reply, shown after restart
    send(qtbot, window, "And again?")
    second = page.view.message_widgets()[3]
    assert second.plain_text().strip()
    assert "safe CPU mode" not in second.footer.text()
    assert window.ctx.paths.safe_mode_file.exists()  # later starts load safe at once

"""The context meter under the chat and the prompt reuse in a reply's footer."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from tests.fake_engine import FakeEngine
from ui.main_window import MainWindow


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    page = window.chat_page
    page.input.setPlainText(text)
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)


def test_the_meter_counts_what_the_next_reply_reads(qtbot: QtBot, window: MainWindow) -> None:
    page = window.chat_page
    qtbot.waitUntil(lambda: page.context_meter.isVisible())
    # Automatic: the starter model's trained length, which this machine has the memory for
    assert page.context_meter.text() == "Context: 0 / 8,192 tokens"
    send(qtbot, window, "Hi")
    # The fake engine read a 10-token prompt and wrote 7 tokens.
    assert page.context_meter.text() == "Context: 17 / 8,192 tokens"
    assert not page.context_meter.property("near")
    footer = page.view.message_widgets()[1].footer.text()
    assert "0 of 10 prompt tokens reused" in footer
    page.open_conversation(None)  # a new chat starts empty
    assert page.context_meter.text() == "Context: 0 / 8,192 tokens"


def test_the_meter_warns_near_the_limit(
    qtbot: QtBot, make_window: Callable[..., MainWindow], fake_engine: FakeEngine
) -> None:
    window = make_window()
    window.ctx.settings.context_length = 256
    fake_engine.words = ["word"] * 210  # with the 10-token prompt: 220 of 256, over 85 %
    window.chat_page.engine.reload(window.ctx.load_params())
    page = window.chat_page
    qtbot.waitUntil(lambda: "/ 256 tokens" in page.context_meter.text())
    send(qtbot, window, "Hi")
    qtbot.waitUntil(lambda: page.context_meter.text().startswith("Context: 220 / 256 tokens"))
    assert "near the limit" in page.context_meter.text()
    assert page.context_meter.property("near")


def test_a_chat_that_outgrows_the_context_is_refused_when_set_so(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    send(qtbot, window, "Hi")
    assert fake_engine.requests[-1][0].drop_oldest  # the default: leave out the oldest
    box = window.settings_page.drop_oldest
    assert box.isChecked()
    box.setChecked(False)
    send(qtbot, window, "Hi again")
    assert not fake_engine.requests[-1][0].drop_oldest
    assert not window.ctx.settings.sampling.drop_oldest
    assert '"drop_oldest": false' in window.ctx.paths.settings_file.read_text()

"""Settings → Local server: the API server in the window, on the window's engine, in turns."""

from __future__ import annotations

import socket
import threading

import openai
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app import secrets
from tests.fake_engine import FakeEngine
from tests.ui.test_chat_page import send
from ui.main_window import MainWindow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_switch_serves_the_library_and_takes_turns_with_chats(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    box = window.settings_page.server_box
    assert box is not None
    assert box.status.text() == "Off."
    assert window.server_status.isHidden()
    box.port.setValue(free_port())
    box.enabled.setChecked(True)
    server = window.server
    assert server is not None
    assert server.running
    assert window.ctx.settings.server_enabled  # remembered for the next launch
    assert "On" in box.status.text()
    assert server.url in box.status.text()

    api = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
    try:
        ids = [m.id for m in api.models.list().data]
        assert ids == ["smollm2-135m-instruct.q4_1"]

        # A chat in the window is replying while a request comes: both get their whole reply.
        fake_engine.delay = 0.03
        answered: list[str] = []

        def ask() -> None:
            reply = api.chat.completions.create(
                model=ids[0], messages=[{"role": "user", "content": "from the API"}]
            )
            answered.append(reply.choices[0].message.content or "")

        asking = threading.Thread(target=ask)
        page = window.chat_page
        page.input.setPlainText("from the window")
        with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
            qtbot.keyClick(page.input, Qt.Key.Key_Return)
            asking.start()
        asking.join(10)
        assert answered == ["".join(fake_engine.words)]
        assert page.conversation is not None
        saved = window.store.messages(page.conversation.id)
        assert saved[-1].content == "".join(fake_engine.words)
        assert saved[-1].status == "complete"
        assert len(window.store.conversations()) == 1  # API requests are not saved as chats
        qtbot.waitUntil(lambda: "1 request served" in box.status.text(), timeout=3000)
        assert window.server_status.isVisible()
        assert "1 request" in window.server_status.text()
        send(qtbot, window, "and the window again")
    finally:
        api.close()

    box.enabled.setChecked(False)
    assert not server.running
    assert box.status.text() == "Off."
    assert window.server_status.isHidden()


def test_other_devices_need_a_key(qtbot: QtBot, window: MainWindow) -> None:
    box = window.settings_page.server_box
    assert box is not None
    secrets.delete_secret(secrets.SERVER_KEY)
    box.port.setValue(free_port())
    box.network.setChecked(True)
    box.enabled.setChecked(True)
    assert window.server is not None
    assert not window.server.running
    assert "API key" in box.status.text()
    assert "not running" in window.server_status.text()
    box.network.setChecked(False)  # back to this computer only: it starts
    assert window.server.running
    box.enabled.setChecked(False)

"""Settings → Connections: another server's models in the chat, through the same chat page."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app import connections
from app.engine.shared import SharedEngine
from app.engine.types import LoadParams
from app.library import LibraryEntry
from app.model_file import read_model_file
from app.server.host import ModelHost
from app.server.run import ApiServer, ServerOptions
from app.settings import Connection, Sampling, Settings
from tests.fake_engine import FakeEngine
from ui.main_window import MainWindow


@pytest.fixture
def other_machine(tiny_model: Path) -> Iterator[tuple[str, FakeEngine]]:
    """Another Hearth's API server (on loopback, over a scripted engine)."""
    fake = FakeEngine()
    fake.words = ["Greetings", " from", " the", " desktop", "."]
    entry = LibraryEntry(tiny_model, "file", read_model_file(tiny_model))
    host = ModelHost(SharedEngine(fake).seat("api"), lambda: [entry], lambda _path: LoadParams())
    server = ApiServer(host, ServerOptions("127.0.0.1", 0), Sampling)
    server.start_thread()
    yield server.options.url, fake
    server.stop()
    host.close()


def test_a_connection_added_and_chatted_with(
    qtbot: QtBot, window: MainWindow, other_machine: tuple[str, FakeEngine]
) -> None:
    url, remote = other_machine
    box = window.settings_page.connections_box
    dialog = box.add()
    dialog.name.setText("Desktop")
    dialog.url.setText(url)
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()
    assert window.ctx.settings.connections == [Connection("Desktop", url)]
    assert "1 models" in box.list.item(0).text() or "1 model" in box.list.item(0).text()

    page = window.chat_page
    label = "tiny-chat — Desktop"
    qtbot.waitUntil(lambda: page.picker.findText(label) >= 0, timeout=10_000)
    page.choose_model(page.picker.itemData(page.picker.findText(label)))
    qtbot.waitUntil(lambda: "Ready" in page.status.text(), timeout=10_000)
    page.input.setPlainText("Hello over there")
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)
    assert remote.calls[-1] == [{"role": "user", "content": "Hello over there"}]
    assert page.conversation is not None
    saved = window.store.messages(page.conversation.id)
    assert saved[-1].content == "Greetings from the desktop."
    assert saved[-1].status == "complete"
    assert window.store.conversation(page.conversation.id).model == "remote:Desktop/tiny-chat"

    # Stop closes the stream at once; the partial reply is kept and marked.
    remote.words = [f" w{i}" for i in range(300)]
    remote.delay = 0.05
    page.input.setPlainText("A long one")
    qtbot.keyClick(page.input, Qt.Key.Key_Return)
    qtbot.waitUntil(
        lambda: (
            " w3" in window.store.messages(page.conversation.id)[-1].content
            or " w3" in (page._stream.turn.text if page._stream else "")
        ),
        timeout=10_000,
    )
    started = time.monotonic()
    with qtbot.waitSignal(window.engine.reply_finished, timeout=5000):
        window.engine.stop()
    assert time.monotonic() - started < 1.0
    last = window.store.messages(page.conversation.id)[-1]
    assert last.status == "interrupted"
    assert last.content.startswith(" w0 w1 w2")


def test_offline_mode_allows_only_connections_on_this_computer() -> None:
    settings = Settings(offline=True)
    settings.connections = [
        Connection("Here", "http://127.0.0.1:1/v1"),
        Connection("Far", "http://192.0.2.7:8484/v1"),
    ]
    found = {r.connection: r for r in connections.list_models(settings)}
    assert "Offline mode is on" in found["Far"].error
    assert "Offline mode" not in found["Here"].error  # tried (and unreachable here)
    with pytest.raises(connections.EngineError, match="Offline mode is on"):
        connections.engine_for(settings, "Far")


@pytest.mark.slow
def test_chat_through_llama_cpp_pythons_server(
    qtbot: QtBot, window: MainWindow, llama_server: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """A server nobody here wrote, as a connection: a reply streams into the chat page, Stop
    ends the next one mid-reply, and a server killed mid-stream leaves the partial reply kept
    and marked."""
    url, server = llama_server
    window.ctx.settings.connections = [Connection("llama", url)]
    window.refresh_remote_models()
    page = window.chat_page
    qtbot.waitUntil(
        lambda: any(
            page.picker.itemText(i).endswith("— llama") for i in range(page.picker.count())
        ),
        timeout=10_000,
    )
    i = next(i for i in range(page.picker.count()) if page.picker.itemText(i).endswith("— llama"))
    page.choose_model(page.picker.itemData(i))
    window.ctx.settings.sampling = Sampling(temperature=0, max_tokens=400)

    def streamed() -> str:
        return page._stream.turn.text if page._stream else ""

    page.input.setPlainText("Say hello.")
    with qtbot.waitSignal(window.engine.reply_finished, timeout=60_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)
    assert page.conversation is not None
    first = window.store.messages(page.conversation.id)[-1]
    assert first.content.strip()
    assert first.status == "complete"

    page.input.setPlainText("Tell me a very long story about a dragon.")
    qtbot.keyClick(page.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(streamed()) > 20, timeout=60_000)
    started = time.monotonic()
    with qtbot.waitSignal(window.engine.reply_finished, timeout=5000):
        window.engine.stop()
    assert time.monotonic() - started < 1.0
    stopped = window.store.messages(page.conversation.id)[-1]
    assert stopped.status == "interrupted"
    assert len(stopped.content) > 20

    page.input.setPlainText("Tell me another long story, about a ship.")
    qtbot.keyClick(page.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(streamed()) > 20, timeout=60_000)
    with qtbot.waitSignal(window.engine.reply_failed, timeout=10_000) as failed:
        server.kill()
    assert "lost mid-reply" in failed.args[0]
    cut = window.store.messages(page.conversation.id)[-1]
    assert cut.status == "error"
    assert len(cut.content) > 20  # what came before the cut is kept

"""The window and the command line writing one chats database at the same time (``hearth chat``
twice, and ``hearth chats import`` of a long history): no lock errors anywhere, the window never
waits long for the database, and every message of all of them is there afterwards, in order, in
a sound database."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QElapsedTimer, QTimer
from pytestqt.qtbot import QtBot

from app.chats.store import ChatStore
from app.context import AppContext
from app.engine.cpu_safety import SafeModeMemory
from app.engine.types import LoadParams
from tests.cli_process import ROOT
from tests.fake_engine import FakeEngine
from ui.main_window import MainWindow

CLIS = 2
CLI_MESSAGES = 3
WINDOW_AT_LEAST = 12  # and on until the command lines are done
PER_CHAT = 3  # the window starts a new chat after this many messages
DEADLINE = 240  # seconds for the command lines, on a busy 2-core machine
# A long ChatGPT or Hearth history: importing it took 8 s here in one transaction.
IMPORTED_CHATS = 1_000
IMPORTED_MESSAGES = 120  # each
LONGEST_WAIT_MS = 1500  # the window's longest pause (a frame is 16 ms; SQLite gives up at 5 s)


def cli_message(n: int, i: int) -> str:
    return f"Command line {n}, message {i}: name a colour."


def write_history(path: Path) -> None:
    """A Hearth export of IMPORTED_CHATS conversations."""
    chats = [
        {
            "uid": f"imported-{i}",
            "title": f"Imported chat {i}",
            "messages": [
                {
                    "id": j + 1,
                    "parent_id": j or None,
                    "role": "assistant" if j % 2 else "user",
                    "content": f"Message {j} of an imported chat, long enough to be real. " * 4,
                    "status": "complete",
                }
                for j in range(IMPORTED_MESSAGES)
            ],
        }
        for i in range(IMPORTED_CHATS)
    ]
    path.write_text(json.dumps({"format": "hearth-chats", "version": 2, "conversations": chats}))


class StallMeter:
    """The longest time the GUI thread went without running a 20 ms timer."""

    def __init__(self) -> None:
        self.longest_ms = 0
        self._clock = QElapsedTimer()
        self._clock.start()
        self._timer = QTimer(interval=20)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        self.longest_ms = max(self.longest_ms, self._clock.restart())

    def stop(self) -> None:
        self._timer.stop()


@pytest.mark.slow
def test_window_and_command_lines_write_one_database_at_once(
    qtbot: QtBot,
    make_window: Callable[..., MainWindow],
    fake_engine: FakeEngine,
    starter_params: LoadParams,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO)
    paths = AppContext.open().paths
    if starter_params.safe_cpu:  # known for this processor: the command lines need not find out
        SafeModeMemory(paths.safe_mode_file).remember("llama.cpp's fast kernels fault here")
    fake_engine.delay = 0.02  # a short reply, saved when it starts and ends: many writes
    window = make_window()
    page = window.chat_page
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    clis = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "chat", "--max-tokens", "12"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(CLIS)
    ]
    history = tmp_path / "history.json"
    write_history(history)
    importer = subprocess.Popen(
        [sys.executable, "-m", "app", "chats", "import", str(history)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clis.append(importer)
    for n, cli in enumerate(clis[:CLIS]):
        assert cli.stdin is not None
        cli.stdin.write("".join(cli_message(n, i) + "\n" for i in range(CLI_MESSAGES)))
        cli.stdin.close()  # Ctrl+D after the last one: the chat ends

    sent: list[str] = []
    statuses: list[str] = []
    deadline = time.monotonic() + DEADLINE
    stalls = StallMeter()
    while len(sent) < WINDOW_AT_LEAST or any(cli.poll() is None for cli in clis):
        assert time.monotonic() < deadline, "the command lines did not finish"
        if sent and len(sent) % PER_CHAT == 0:
            window.new_chat()
        text = f"Window message {len(sent)}"
        page.input.setPlainText(text)
        # Not raising: a message the database refused is said in the status, checked below.
        with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000, raising=False):
            page.send()
        sent.append(text)
        statuses.append(page.status.text())
        qtbot.wait(100)  # leave the command lines some of the CPU
    stalls.stop()
    errors = []
    outputs = []
    for cli in clis:
        assert cli.stdout is not None
        assert cli.stderr is not None
        cli.wait(60)  # done already: its output fits in the pipes
        outputs.append(cli.stdout.read())
        err = cli.stderr.read()
        for stream in (cli.stdout, cli.stderr):
            stream.close()
        assert cli.returncode == 0, err
        errors.append(err)

    logs = "".join(
        f.read_text(errors="replace") for f in paths.log_file.parent.glob("*.log") if f.is_file()
    )
    for where in (*errors, *statuses, caplog.text, logs):
        assert "locked" not in where.lower(), where
        assert "Traceback" not in where, where

    assert stalls.longest_ms < LONGEST_WAIT_MS
    assert f"Imported {IMPORTED_CHATS:,} conversations" in outputs[-1]

    raw = sqlite3.connect(paths.chats_db)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()
    store = ChatStore(paths.chats_db)
    try:
        conversations = store.conversations()
        imported = [c for c in conversations if c.title.startswith("Imported chat ")]
        assert len(imported) == IMPORTED_CHATS
        chats = [store.messages(c.id) for c in conversations if c not in imported]
    finally:
        store.close()
    turns = [
        (chat[i].content, chat[i + 1])
        for chat in chats
        for i in range(len(chat))
        if chat[i].role == "user"
    ]
    asked = [content for content, _ in turns]
    assert sorted(asked) == sorted(
        sent + [cli_message(n, i) for n in range(CLIS) for i in range(CLI_MESSAGES)]
    )
    for content, reply in turns:
        assert reply.role == "assistant", content
        assert reply.status == "complete", (content, reply.status, reply.error)
        assert reply.content.strip(), content
    window_replies = [reply.content for content, reply in turns if content in sent]
    assert window_replies == ["".join(fake_engine.words)] * len(sent)
    # Each command line's messages make one conversation, in the order they were typed.
    for n in range(CLIS):
        [chat] = [c for c in chats if cli_message(n, 0) in (m.content for m in c)]
        assert [m.content for m in chat if m.role == "user"] == [
            cli_message(n, i) for i in range(CLI_MESSAGES)
        ]
    assert len(chats) == CLIS + -(-len(sent) // PER_CHAT)  # nothing merged, nothing extra

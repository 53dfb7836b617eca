"""SIGKILL of the window mid-reply, 20 times at random moments: the database stays intact,
nothing earlier changes, each cut reply is kept and marked interrupted once anyone reads again,
and the engine process the window left behind ends by itself."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.chats.store import ChatStore
from app.context import AppContext
from tests.chat_db import rows, seed
from tests.cli_process import ROOT

KILLS = 20
SCRIPT = """
import os, sys
from PySide6.QtCore import QTimer
from ui import application
from ui.main_window import MainWindow

def show(self, _show=MainWindow.show):
    _show(self)
    def send():
        self.chat_page.input.setPlainText(os.environ["MESSAGE"])
        self.chat_page.send()
    QTimer.singleShot(300, send)

MainWindow.show = show
if __name__ == "__main__":
    sys.exit(application.run([]))
"""


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def _streaming(db: Path, message: str) -> bool:
    if not db.exists():
        return False
    raw = sqlite3.connect(db)
    try:
        row = raw.execute(
            "SELECT m.status FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE c.title = ? AND m.role = 'assistant'",
            (message,),
        ).fetchone()
    except sqlite3.Error:
        return False
    finally:
        raw.close()
    return row is not None and row[0] == "streaming"


@pytest.mark.slow
def test_kills_of_the_window_mid_reply_lose_nothing(tmp_path: Path, hearth_home: Path) -> None:
    script = tmp_path / "run_app.py"
    script.write_text(SCRIPT)
    db = AppContext.open().paths.chats_db
    seed(db)
    before = rows(db)
    rng = random.Random(5)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    engines: list[int] = []
    for n in range(KILLS):
        message = f"tell a long story {n}"
        window = subprocess.Popen(
            [sys.executable, str(script)],
            env={**env, "MESSAGE": message},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while not _streaming(db, message) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _streaming(db, message), f"kill {n}: the reply did not start"
        time.sleep(rng.uniform(0, 1.2))
        # Started from the engine's thread: a child of that thread's task, not the main one's.
        for task in Path(f"/proc/{window.pid}/task").glob("*/children"):
            engines += [int(pid) for pid in task.read_text().split()]
        window.send_signal(signal.SIGKILL)
        window.wait()
        now = rows(db)
        assert now[: len(before)] == before  # nothing earlier changed
        store = ChatStore(db)  # the next reader marks the dead window's reply
        [conversation] = [c for c in store.conversations() if c.title == message]
        user, reply = store.messages(conversation.id)
        store.close()
        assert user.content == message
        assert reply.status == "interrupted"
        before = rows(db)
    assert len(engines) >= KILLS  # each window had its engine process when it was killed
    deadline = time.monotonic() + 10
    alive = engines
    while alive and time.monotonic() < deadline:
        alive = [
            pid
            for pid in engines
            if Path(f"/proc/{pid}").exists()
            and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
        ]
        time.sleep(0.2)
    assert alive == []  # the orphaned engine processes ended once their window was gone

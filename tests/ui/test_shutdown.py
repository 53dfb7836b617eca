"""Closing Hearth from outside (SIGTERM at logout, Ctrl+C in its terminal) mid-reply: it ends
within 2 s, saves the reply so far, and leaves no QThread or semaphore behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.chats.store import ChatStore
from app.context import AppContext
from tests.cli_process import ROOT

SCRIPT = """
import os, signal, sys, time
from pathlib import Path
from PySide6.QtCore import QTimer
from ui import application
from ui.main_window import MainWindow

def show(self, _show=MainWindow.show):
    _show(self)
    page = self.chat_page
    def send():
        page.input.setPlainText("Tell me a very long story about a lighthouse.")
        page.send()
    def signal_when_streaming():
        if page._stream is not None and len(page._stream.turn.text) > 40:
            Path(os.environ["SIGNALLED_AT"]).write_text(repr(time.monotonic()))
            os.kill(os.getpid(), int(os.environ["SIGNAL"]))
        else:
            QTimer.singleShot(50, signal_when_streaming)
    QTimer.singleShot(500, send)
    QTimer.singleShot(600, signal_when_streaming)

MainWindow.show = show
if __name__ == "__main__":
    sys.exit(application.run([]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_reply_closes_the_window_cleanly(
    tmp_path: Path, hearth_home: Path, number: int
) -> None:
    script = tmp_path / "run_app.py"
    script.write_text(SCRIPT)
    stamp = tmp_path / "signalled"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "QT_QPA_PLATFORM": "offscreen",
        "SIGNALLED_AT": str(stamp),
        "SIGNAL": str(int(number)),
        "PYTHONWARNINGS": "default",  # a leaked semaphore is a warning at exit
    }
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    ended = time.monotonic()
    assert stamp.exists(), err
    assert ended - float(stamp.read_text()) < 2.0 + 0.5  # the parent notices a moment later
    assert proc.returncode == 0, err
    for bad in ("leaked semaphore", "QThread: Destroyed", "Traceback", "KeyboardInterrupt"):
        assert bad not in err, err
    store = ChatStore(AppContext.open().paths.chats_db)
    try:
        [conversation] = store.conversations()
        reply = store.messages(conversation.id)[-1]
    finally:
        store.close()
    assert reply.status == "interrupted"
    assert len(reply.content) > 40  # what was shown is kept

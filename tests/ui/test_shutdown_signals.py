"""Closing Hearth from outside (SIGTERM at logout, Ctrl+C in its terminal) mid-download: it ends
within 2 s without a QThread or a semaphore left behind, and the download resumes where it
stopped at the next start, fetching only the bytes it lacked."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.context import AppContext
from app.downloads import State
from tests.cli_process import ROOT
from tests.fake_hub import FakeHub
from ui.main_window import MainWindow

REPO = "acme/Big-GGUF"
FILE = "big-Q4_K_M.gguf"
SIZE = 3 << 20

# The window downloads the file from the fake Hub and, once a fifth has come, signals itself,
# noting when and how much the window said had come.
SCRIPT = """
import json, os, signal, sys, time
from pathlib import Path
from PySide6.QtCore import QTimer
from app.hub.api import list_models
from ui import application
from ui.main_window import MainWindow

def show(self, _show=MainWindow.show):
    _show(self)
    def start():
        [model] = list_models(os.environ["REPO"])
        self.download(model)
        QTimer.singleShot(50, signal_when_downloading)
    def signal_when_downloading():
        jobs = self.downloads.jobs()
        if jobs and jobs[0].done > int(os.environ["SIZE"]) // 5:
            note = {"at": time.monotonic(), "shown": jobs[0].done}
            Path(os.environ["SIGNALLED_AT"]).write_text(json.dumps(note))
            os.kill(os.getpid(), int(os.environ["SIGNAL"]))
        else:
            QTimer.singleShot(20, signal_when_downloading)
    QTimer.singleShot(300, start)

MainWindow.show = show
if __name__ == "__main__":
    sys.exit(application.run([]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_download_closes_cleanly_and_the_download_resumes(
    qtbot: QtBot,
    tmp_path: Path,
    fake_hub: FakeHub,
    make_window: Callable[..., MainWindow],
    number: int,
) -> None:
    blob = os.urandom(SIZE)
    fake_hub.add(REPO, {FILE: blob})
    fake_hub.throttle = SIZE / 6  # ~6 s for the whole file
    script = tmp_path / "run_app.py"
    script.write_text(SCRIPT)
    note_file = tmp_path / "signalled"
    env = {
        **os.environ,  # HEARTH_HOME and HF_ENDPOINT (the fake Hub) from the fixtures
        "PYTHONPATH": str(ROOT),
        "QT_QPA_PLATFORM": "offscreen",
        "REPO": REPO,
        "SIZE": str(SIZE),
        "SIGNALLED_AT": str(note_file),
        "SIGNAL": str(int(number)),
        "PYTHONWARNINGS": "default",  # a leaked semaphore is a warning at exit
    }
    window = subprocess.Popen(
        [sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        _, err = window.communicate(timeout=120)
    finally:
        if window.poll() is None:
            window.kill()
    ended = time.monotonic()
    assert note_file.exists(), err
    note = json.loads(note_file.read_text())
    assert ended - note["at"] < 2.0, err
    assert window.returncode == 0, err
    for bad in ("leaked", "QThread: Destroyed", "Traceback", "KeyboardInterrupt"):
        assert bad not in err, err

    paths = AppContext.open().paths
    part = paths.partial_dir / "acme" / "Big-GGUF" / f"{FILE}.part"
    kept = part.stat().st_size
    assert note["shown"] <= kept < SIZE  # what the window said had come is on disk
    dest = paths.models_dir / "acme" / "Big-GGUF" / FILE
    assert not dest.exists()  # a partial file is never a model

    # The next start resumes the download from the queue it saved, with one Range request.
    fake_hub.throttle = 0
    fake_hub.requests.clear()
    second = make_window()
    qtbot.waitUntil(
        lambda: [j.state for j in second.downloads.jobs()] == [State.DONE], timeout=20_000
    )
    ranges = [r for _m, p, r in fake_hub.requests if p.startswith("/cdn/")]
    assert ranges == [f"bytes={kept}-"]  # none of the kept bytes fetched again
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == hashlib.sha256(blob).hexdigest()

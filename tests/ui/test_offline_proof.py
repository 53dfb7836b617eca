"""Offline, provably: a whole session of the window — start, a chat with the real model, the
Discover, Downloads, Models and Settings pages, quit — under a guard that records and refuses
every connection any Hearth process tries, the engine process included. With offline mode on:
none. With it off and no Hub use: none either."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_process import ROOT

# Imported by every Python process of the session (the engine's too, spawned with the same
# environment) through PYTHONPATH: any connect() is written down and refused.
GUARD = """
import json, os, socket

_log = os.environ["CONNECTIONS_LOG"]

def _refuse(kind, address):
    with open(_log, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "kind": kind, "address": repr(address)}) + "\\n")
    raise ConnectionRefusedError(f"socket guard: {kind} to {address!r}")

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex

def connect(self, address):
    if self.family == socket.AF_UNIX:
        return _connect(self, address)
    _refuse("connect", address)

def connect_ex(self, address):
    if self.family == socket.AF_UNIX:
        return _connect_ex(self, address)
    _refuse("connect_ex", address)

socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    _refuse("getaddrinfo", host)
socket.getaddrinfo = getaddrinfo
with open(_log, "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "kind": "guarded"}) + "\\n")
"""

SESSION = """
import os, sys
from PySide6.QtCore import QTimer
from ui import application
from ui.main_window import MainWindow

def show(self, _show=MainWindow.show):
    _show(self)
    page = self.chat_page
    def send():
        page.input.setPlainText("Say hello.")
        page.send()
    def visit(pages):
        if not pages:
            self.close()
            return
        self.show_page(pages[0])
        QTimer.singleShot(300, lambda: visit(pages[1:]))
    def after_reply(_stats):
        if os.environ.get("SEARCH"):  # the control: a Hub search must be seen by the guard
            self.show_page(self.DISCOVER)
            self.discover_page.query.setText("qwen")
            QTimer.singleShot(2500, self.close)
            return
        visit([self.DISCOVER, self.DOWNLOADS, self.MODELS, self.SETTINGS, self.CHAT])
    self.engine.reply_finished.connect(after_reply)
    self.engine.reply_failed.connect(lambda m: (print("reply failed:", m), self.close()))
    QTimer.singleShot(500, send)

MainWindow.show = show
if __name__ == "__main__":
    sys.exit(application.run([]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("offline", "search"),
    [(True, False), (False, False), (True, True), (False, True)],
    ids=["offline", "online-no-hub-use", "offline-search", "control-online-search"],
)
def test_a_whole_session_opens_no_connection(
    tmp_path: Path, hearth_home: Path, offline: bool, search: bool
) -> None:
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    (tmp_path / "session.py").write_text(SESSION)
    connections = tmp_path / "connections.jsonl"
    settings = hearth_home / "config" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"offline": offline, "sampling": {"max_tokens": 16}}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(guard_dir), str(ROOT)]),
        "QT_QPA_PLATFORM": "offscreen",
        "CONNECTIONS_LOG": str(connections),
        "SEARCH": "1" if search else "",
    }
    env.pop("HF_HUB_OFFLINE", None)  # only Hearth's own setting keeps it offline here
    result = subprocess.run(
        [sys.executable, str(tmp_path / "session.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reply failed" not in result.stdout, result.stdout
    records = [json.loads(line) for line in connections.read_text().splitlines()]
    guarded = {r["pid"] for r in records if r["kind"] == "guarded"}
    assert len(guarded) >= 2  # the window's process and the engine's were both watched
    attempts = [r for r in records if r["kind"] != "guarded"]
    if search and not offline:
        assert attempts  # the guard sees Hearth's HTTP stack: the proof above can fail
    else:
        assert attempts == []

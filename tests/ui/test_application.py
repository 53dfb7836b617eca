"""Starting the window when Hearth's files cannot be used: a plain message, nothing touched."""

from __future__ import annotations

import os

import pytest

from app.context import AppContext
from ui import application


def test_damaged_chats_are_said_at_start_and_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    db = AppContext.open().paths.chats_db
    db.write_bytes(os.urandom(4096))
    before = db.read_bytes()
    shown: list[str] = []
    monkeypatch.setattr(application.QMessageBox, "critical", lambda *a: shown.append(a[2]))
    assert application.run([]) == 1
    assert len(shown) == 1
    assert "cannot be used (file is not a database)" in shown[0]
    assert db.read_bytes() == before

"""The chat database as the reliability tests look at it: an earlier conversation to keep, and
its rows read past Hearth's code after an integrity check."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.chats.store import ChatStore


def seed(db: Path) -> None:
    """An earlier conversation that nothing later may change."""
    store = ChatStore(db)
    c = store.create_conversation(title="kept")
    store.add_message(c.id, "user", "an earlier question")
    store.add_message(c.id, "assistant", "an earlier answer")
    store.close()


def rows(db: Path) -> list[tuple[object, ...]]:
    """Every message row, after SQLite says the file is intact."""
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return raw.execute("SELECT * FROM messages ORDER BY id").fetchall()
    finally:
        raw.close()

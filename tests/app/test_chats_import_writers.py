"""A long import lets other writers in: the window or ``hearth chat`` saving a message while
``chats import`` (or the window's Import chats…) adds a long history waits a moment, not the
whole import (8 s for 12,000 chats, past SQLite's 5 s: "database is locked")."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app.chats import transfer
from app.chats.store import ChatStore
from app.chats.transfer import ImportResult, parse_import

CHATS = 200
MESSAGES = 40  # each


def history() -> dict[str, object]:
    return {
        "format": "hearth-chats",
        "version": 2,
        "conversations": [
            {
                "uid": f"imported-{i}",
                "title": f"Imported chat {i}",
                "messages": [
                    {
                        "id": j + 1,
                        "parent_id": j or None,
                        "role": "assistant" if j % 2 else "user",
                        "content": f"Message {j} of imported chat {i}.",
                        "status": "complete",
                    }
                    for j in range(MESSAGES)
                ],
            }
            for i in range(CHATS)
        ],
    }


def test_messages_are_saved_during_a_long_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "chats.sqlite3"
    ChatStore(db).close()
    # Slices this short make a small history a long import (shorter pauses keep it quick).
    monkeypatch.setattr(transfer, "IMPORT_SLICE_SECONDS", 0.01)
    monkeypatch.setattr(transfer, "IMPORT_PAUSE_SECONDS", 0.03)
    conversations = parse_import(history())
    results: list[ImportResult] = []

    def run_import() -> None:
        importer = ChatStore(db)
        try:
            results.append(importer.import_conversations(conversations))
        finally:
            importer.close()

    store = ChatStore(db)
    thread = threading.Thread(target=run_import)
    thread.start()
    waits: list[float] = []
    saved: list[int] = []
    try:
        while not store.conversations():
            time.sleep(0.001)  # the import has begun
        while thread.is_alive() and len(saved) < 10:
            started = time.monotonic()
            conversation = store.create_conversation(f"Saved meanwhile {len(saved)}", "m.gguf")
            store.add_message(conversation.id, "user", "Hello")
            waits.append(time.monotonic() - started)
            saved.append(conversation.id)
            time.sleep(0.02)
        thread.join(30)
        imported = [c.id for c in store.conversations() if c.title.startswith("Imported chat")]
    finally:
        store.close()
    [result] = results
    assert (result.conversations, result.messages) == (CHATS, CHATS * MESSAGES)
    assert len(imported) == CHATS
    # Messages were saved between the import's pieces, not only after all of it.
    assert any(min(imported) < s < max(imported) for s in saved), (saved, min(imported))
    assert max(waits) < 1.0

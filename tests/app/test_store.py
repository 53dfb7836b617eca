from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.chats.history import engine_messages, title_from
from app.chats.schema import MIGRATIONS
from app.chats.store import ChatStore, ChatStoreError
from app.chats.transfer import export_markdown


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chats.sqlite3"


def test_conversations_and_messages(db: Path) -> None:
    store = ChatStore(db)
    c = store.create_conversation("Hello", model="m.gguf", system_prompt="Be brief.")
    u = store.add_message(c.id, "user", "Hi")
    a = store.add_message(c.id, "assistant", "", "streaming", "Model")
    assert a.parent_id == u.id
    store.update_message(a.id, content="Hello!", status="complete", stats={"generated_tokens": 2})
    msgs = store.messages(c.id)
    assert [(m.role, m.content, m.status) for m in msgs] == [
        ("user", "Hi", "complete"),
        ("assistant", "Hello!", "complete"),
    ]
    assert msgs[1].stats == {"generated_tokens": 2}
    store.update_conversation(c.id, title="Renamed")
    assert [x.title for x in store.conversations()] == ["Renamed"]
    store.delete_conversation(c.id)
    assert store.conversations() == []
    assert store.messages(c.id) == []


def test_wal_and_schema_version(db: Path) -> None:
    ChatStore(db).close()
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(ChatStoreError, match="newer Hearth"):
        ChatStore(db)


def test_unfinished_reply_is_interrupted_after_a_crash(db: Path) -> None:
    store = ChatStore(db)
    c = store.create_conversation()
    store.add_message(c.id, "user", "Tell me a story")
    live = store.add_message(c.id, "assistant", "Once upon", "streaming")
    dead_writer = f"{socket.gethostname()}/{_ended_pid()}/12345.00"
    dead = store.add_message(c.id, "assistant", "A time", "streaming", writer=dead_writer)
    old = store.add_message(c.id, "assistant", "Older Hearth", "streaming", writer="")
    # Whoever opens the database next marks the dead writers' replies, not the live one's.
    reopened = ChatStore(db)
    assert reopened.message(live.id).status == "streaming"  # type: ignore[union-attr]
    for m in (dead, old):
        saved = reopened.message(m.id)
        assert saved is not None
        assert (saved.content, saved.status) == (m.content, "interrupted")
    assert reopened.recover_interrupted() == 0  # nothing more to do


def test_a_writer_on_another_host_has_a_lease(db: Path) -> None:
    store = ChatStore(db)
    c = store.create_conversation()
    away = store.add_message(c.id, "assistant", "…", "streaming", writer="elsewhere/1/1.00")
    assert ChatStore(db).message(away.id).status == "streaming"  # type: ignore[union-attr]
    store._db.execute("UPDATE messages SET saved_at = saved_at - 3600 WHERE id = ?", (away.id,))
    assert ChatStore(db).message(away.id).status == "interrupted"  # type: ignore[union-attr]


def _ended_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_export_shapes(db: Path) -> None:
    store = ChatStore(db)
    c = store.create_conversation("Trip", model="x.gguf")
    store.add_message(c.id, "user", "Where to?")
    store.add_message(c.id, "assistant", "Lisbon.")
    data = store.export()
    [conv] = data["conversations"]
    assert {"id", "title", "model", "messages"} <= conv.keys()
    assert [(m["role"], m["content"]) for m in conv["messages"]] == [
        ("user", "Where to?"),
        ("assistant", "Lisbon."),
    ]
    md = export_markdown(data)
    assert "# Trip" in md
    assert "Lisbon." in md
    assert "**You**" in md
    assert store.export([c.id + 1])["conversations"] == []


def test_engine_messages_skip_failed_replies(db: Path) -> None:
    store = ChatStore(db)
    c = store.create_conversation(system_prompt="Be kind.")
    store.add_message(c.id, "user", "A")
    failed = store.add_message(c.id, "assistant", "", "error")
    store.update_message(failed.id, error="boom")
    store.add_message(c.id, "user", "B")
    assert engine_messages(c, store.messages(c.id)) == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "A"},
        {"role": "user", "content": "B"},
    ]


def test_title_from() -> None:
    assert title_from("  hello\n world ") == "hello world"
    assert title_from("x" * 100).endswith("…")
    assert len(title_from("x" * 100)) == 48


def test_two_processes_adding_messages_never_hit_a_locked_database(db: Path) -> None:
    """A deferred transaction that reads then writes deadlocked between two writers."""
    ChatStore(db).close()
    script = (
        "import sys\n"
        "from app.chats.store import ChatStore\n"
        "s = ChatStore(sys.argv[1])\n"
        "for i in range(150):\n"
        "    c = s.create_conversation(title=f't{i}')\n"
        "    s.add_message(c.id, 'user', 'q')\n"
        "    s.add_message(c.id, 'assistant', 'a')\n"
    )
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(db)], cwd=root, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    store = ChatStore(db)
    conversations = store.conversations()
    assert len(conversations) == 300
    assert all(len(store.messages(c.id)) == 2 for c in conversations)

"""Conversations and messages in SQLite (WAL), migrated by ``PRAGMA user_version``.

A streaming reply is written while it grows (status ``streaming``), naming its writer; if that
process dies, whichever Hearth process opens the database next marks it ``interrupted``, so
nothing that was on screen is lost and nothing pretends to be done.
Every message records its parent, so edits and regenerations can become branches later.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from app.chats.writers import this_writer, writer_alive

Role = Literal["system", "user", "assistant"]
Status = Literal["complete", "streaming", "interrupted", "error"]

_MIGRATIONS: list[str] = [
    # 1: conversations and messages
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        system_prompt TEXT NOT NULL DEFAULT '',
        sampling TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'complete'
            CHECK (status IN ('complete', 'streaming', 'interrupted', 'error')),
        error TEXT,
        model TEXT NOT NULL DEFAULT '',
        stats TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    CREATE INDEX conversations_by_update ON conversations(updated_at DESC);
    """,
    # 2: a streaming reply names its writer and when it last saved (app/chats/writers.py)
    """
    ALTER TABLE messages ADD COLUMN writer TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN saved_at REAL NOT NULL DEFAULT 0;
    CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming';
    """,
]


@dataclass
class Conversation:
    id: int
    title: str
    model: str
    system_prompt: str
    sampling: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass
class Message:
    id: int
    conversation_id: int
    parent_id: int | None
    role: Role
    content: str
    status: Status = "complete"
    error: str | None = None
    model: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0


class ChatStoreError(Exception):
    """The chat database cannot be used; ``str(e)`` is meant for the user."""


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _saving(method: _Method) -> _Method:
    """A write to the database, whose failure (a full disk, a read-only or vanished file) is a
    ChatStoreError saying so; what was saved before stays as it was (SQLite's transactions)."""

    @functools.wraps(method)
    def write(self: ChatStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            if "full" in str(e):
                raise ChatStoreError(
                    "The disk is full: the chat could not be saved. Free some space; what was "
                    "saved before is kept."
                ) from None
            raise ChatStoreError(f"The chat could not be saved ({e}).") from None

    return cast(_Method, write)


class ChatStore:
    """The chat database; one instance per thread (SQLite connections are not shared)."""

    def __init__(self, path: Path | str) -> None:
        """Open (or create) the database. Raises ``ChatStoreError`` with the reason when it
        cannot be used; the file is then left exactly as it is."""
        try:
            if isinstance(path, Path):
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise ChatStoreError(f"The chats at {path} cannot be opened ({e}).") from None
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode survives an app crash; only power loss can drop the last commit.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
            self.recover_interrupted()
        except sqlite3.Error as e:
            self._db.close()
            raise ChatStoreError(
                f"The chats at {path} cannot be used ({e}). Hearth has left the file as it is; "
                "move it away to start with no chats, or restore it from a backup."
            ) from None

    def recover_interrupted(self) -> int:
        """Mark replies left ``streaming`` by a writer that is gone as ``interrupted``.

        Run whenever the database is opened, by any Hearth process: a reply another live
        process is streaming right now is left alone (see app/chats/writers.py).
        """
        rows = self._db.execute(
            "SELECT id, writer, saved_at FROM messages WHERE status = 'streaming'"
        ).fetchall()
        now = time.time()
        dead = [r["id"] for r in rows if not writer_alive(r["writer"], r["saved_at"], now)]
        for message_id in dead:
            self._db.execute(
                "UPDATE messages SET status = 'interrupted' WHERE id = ? AND status = 'streaming'",
                (message_id,),
            )
        return len(dead)

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            self._db.close()
            raise ChatStoreError(
                f"The chat database is from a newer Hearth (schema {version}); update Hearth."
            )
        if version == len(_MIGRATIONS):
            return
        with self._db:
            # Taken before reading the version again: two processes opening a new database at
            # once must not both create its tables.
            self._db.execute("BEGIN IMMEDIATE")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for i, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {i}")

    # conversations

    @_saving
    def create_conversation(
        self,
        title: str = "New chat",
        model: str = "",
        system_prompt: str = "",
        sampling: dict[str, Any] | None = None,
    ) -> Conversation:
        now = time.time()
        cur = self._db.execute(
            "INSERT INTO conversations"
            " (title, model, system_prompt, sampling, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (title, model, system_prompt, json.dumps(sampling or {}), now, now),
        )
        assert cur.lastrowid is not None
        return Conversation(cur.lastrowid, title, model, system_prompt, sampling or {}, now, now)

    def conversations(self) -> list[Conversation]:
        rows = self._db.execute("SELECT * FROM conversations ORDER BY updated_at DESC, id DESC")
        return [_conversation(r) for r in rows]

    def conversation(self, conversation_id: int) -> Conversation | None:
        row = self._db.execute(
            "SELECT * FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        return _conversation(row) if row else None

    @_saving
    def update_conversation(self, conversation_id: int, **changes: Any) -> None:
        allowed = {"title", "model", "system_prompt", "sampling"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown conversation fields: {unknown}")
        if "sampling" in changes:
            changes["sampling"] = json.dumps(changes["sampling"])
        sets = ", ".join(f"{k} = ?" for k in changes)
        self._db.execute(
            f"UPDATE conversations SET {sets}, updated_at = ? WHERE id = ?",
            (*changes.values(), time.time(), conversation_id),
        )

    @_saving
    def delete_conversation(self, conversation_id: int) -> None:
        self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # messages

    def messages(self, conversation_id: int) -> list[Message]:
        rows = self._db.execute(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        )
        return [_message(r) for r in rows]

    def message(self, message_id: int) -> Message | None:
        row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _message(row) if row else None

    @_saving
    def add_message(
        self,
        conversation_id: int,
        role: Role,
        content: str,
        status: Status = "complete",
        model: str = "",
        writer: str | None = None,
    ) -> Message:
        """Add a message at the end; a ``streaming`` one is written by this process unless
        ``writer`` says otherwise."""
        now = time.time()
        if writer is None:
            writer = this_writer() if status == "streaming" else ""
        with self._db:
            # Reads, then writes: taken as a writer at once, or two processes adding messages
            # can deadlock and one fail with "database is locked".
            self._db.execute("BEGIN IMMEDIATE")
            last = self._db.execute(
                "SELECT id FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT 1",
                (conversation_id,),
            ).fetchone()
            parent = last[0] if last else None
            cur = self._db.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, status, model,"
                " created_at, writer, saved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, parent, role, content, status, model, now, writer, now),
            )
            self._db.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id)
            )
        assert cur.lastrowid is not None
        return Message(
            cur.lastrowid, conversation_id, parent, role, content, status, None, model, {}, now
        )

    @_saving
    def update_message(
        self,
        message_id: int,
        *,
        content: str | None = None,
        status: Status | None = None,
        error: str | None = None,
        stats: dict[str, Any] | None = None,
    ) -> None:
        changes: dict[str, Any] = {}
        if content is not None:
            changes["content"] = content
        if status is not None:
            changes["status"] = status
        if error is not None:
            changes["error"] = error
        if stats is not None:
            changes["stats"] = json.dumps(stats)
        if not changes:
            return
        changes["saved_at"] = time.time()  # the writer's lease (app/chats/writers.py)
        sets = ", ".join(f"{k} = ?" for k in changes)
        self._db.execute(
            f"UPDATE messages SET {sets} WHERE id = ?", (*changes.values(), message_id)
        )

    @_saving
    def delete_messages_from(self, message_id: int) -> None:
        """Delete a message and every later one in its conversation."""
        row = self._db.execute(
            "SELECT conversation_id FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row:
            self._db.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND id >= ?", (row[0], message_id)
            )

    # export

    def export(self, conversation_ids: Iterable[int] | None = None) -> dict[str, Any]:
        """All (or some) conversations as plain data: the JSON export format."""
        convs = self.conversations()
        if conversation_ids is not None:
            wanted = set(conversation_ids)
            convs = [c for c in convs if c.id in wanted]
        out = []
        for c in convs:
            out.append(
                {
                    "id": c.id,
                    "title": c.title,
                    "model": c.model,
                    "system_prompt": c.system_prompt,
                    "created_at": c.created_at,
                    "updated_at": c.updated_at,
                    "messages": [
                        {
                            "id": m.id,
                            "parent_id": m.parent_id,
                            "role": m.role,
                            "content": m.content,
                            "status": m.status,
                            "error": m.error,
                            "model": m.model,
                            "stats": m.stats,
                            "created_at": m.created_at,
                        }
                        for m in self.messages(c.id)
                    ],
                }
            )
        return {"format": "hearth-chats", "version": 1, "conversations": out}


def export_markdown(data: dict[str, Any]) -> str:
    parts: list[str] = []
    for c in data["conversations"]:
        parts.append(f"# {c['title']}\n")
        if c.get("model"):
            parts.append(f"*Model: {c['model']}*\n")
        if c.get("system_prompt"):
            parts.append(f"> **System:** {c['system_prompt']}\n")
        for m in c["messages"]:
            who = {"user": "You", "assistant": "Assistant", "system": "System"}[m["role"]]
            note = "" if m["status"] == "complete" else f" *({m['status']})*"
            parts.append(f"**{who}**{note}:\n\n{m['content']}\n")
    return "\n".join(parts)


def _conversation(r: sqlite3.Row) -> Conversation:
    try:
        sampling = json.loads(r["sampling"])
    except ValueError:
        sampling = {}
    return Conversation(
        r["id"],
        r["title"],
        r["model"],
        r["system_prompt"],
        sampling,
        r["created_at"],
        r["updated_at"],
    )


def _message(r: sqlite3.Row) -> Message:
    try:
        stats = json.loads(r["stats"])
    except ValueError:
        stats = {}
    return Message(
        r["id"],
        r["conversation_id"],
        r["parent_id"],
        r["role"],
        r["content"],
        r["status"],
        r["error"],
        r["model"],
        stats,
        r["created_at"],
    )

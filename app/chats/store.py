"""Conversations and messages in SQLite (WAL), migrated by ``PRAGMA user_version``.

A streaming reply is written while it grows (status ``streaming``), naming its writer; if that
process dies, whichever Hearth process opens the database next marks it ``interrupted``, so
nothing that was on screen is lost and nothing pretends to be done.

A conversation is a tree: every message records its parent, and an edit or a regeneration adds
a sibling instead of replacing anything. What is shown (and what the engine reads) is the
selected path: at each message, the child selected or added last (``messages``, ``select``).
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

from app.chats.schema import migrate
from app.chats.search import Order, SearchHit, search
from app.chats.titles import title_from
from app.chats.writers import this_writer, writer_alive

Role = Literal["system", "user", "assistant"]
Status = Literal["complete", "streaming", "interrupted", "error"]

NEW_CHAT_TITLE = "New chat"
# How long a trashed conversation waits for Undo at most: any Hearth opening the chats deletes
# older ones for good (the window empties its trash itself when its Undo offer ends).
TRASH_KEEP = 3600.0

# The shown path of conversation :conversation, as rows (id, depth) from its first message; the
# last row's id is NULL. At each level the child selected or added last wins.
_SELECTED_PATH = """
WITH RECURSIVE path(id, depth) AS (
    SELECT (SELECT id FROM messages WHERE conversation_id = :conversation AND parent_id IS NULL
            ORDER BY selected_at DESC, id DESC LIMIT 1), 0
    UNION ALL
    SELECT (SELECT m.id FROM messages m WHERE m.parent_id = path.id
            ORDER BY m.selected_at DESC, m.id DESC LIMIT 1), path.depth + 1
    FROM path WHERE path.id IS NOT NULL
)
"""


@dataclass
class Conversation:
    id: int
    title: str
    model: str
    system_prompt: str
    sampling: dict[str, Any]  # raw JSON; typed: ``ChatSettings.from_json`` / store.chat_settings
    created_at: float
    updated_at: float
    pinned: bool = False
    title_edited: bool = False  # the user named it: automatic titles leave it alone
    deleted_at: float | None = None  # in the trash since then (see ChatStore.trash_conversation)


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


@dataclass(frozen=True)
class Siblings:
    """The versions of a message (it and the others under its parent, oldest first)."""

    ids: tuple[int, ...]
    index: int  # the message's place in ``ids``, from 0

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def position(self) -> int:
        """The message's place counted from 1, as shown: "‹ position/count ›"."""
        return self.index + 1

    @property
    def previous(self) -> int | None:
        """The older version to show on "‹", if any."""
        return self.ids[self.index - 1] if self.index > 0 else None

    @property
    def next(self) -> int | None:
        """The newer version to show on "›", if any."""
        return self.ids[self.index + 1] if self.index + 1 < len(self.ids) else None


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
            self.empty_trash(TRASH_KEEP)
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
        try:
            migrate(self._db)
        except ValueError as e:
            self._db.close()
            raise ChatStoreError(
                f"The chat database is from a newer Hearth (schema {e}); update Hearth."
            ) from None

    # conversations

    @_saving
    def create_conversation(
        self,
        title: str = NEW_CHAT_TITLE,
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
        """The conversation list: pinned ones first, then the newest first (trash left out)."""
        rows = self._db.execute(
            "SELECT * FROM conversations WHERE deleted_at IS NULL"
            " ORDER BY pinned DESC, updated_at DESC, id DESC"
        )
        return [_conversation(r) for r in rows]

    def conversation(self, conversation_id: int) -> Conversation | None:
        """A conversation by id, also one in the trash (its ``deleted_at`` says so)."""
        row = self._db.execute(
            "SELECT * FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        return _conversation(row) if row else None

    @_saving
    def update_conversation(self, conversation_id: int, **changes: Any) -> None:
        """Change ``title``, ``model``, ``system_prompt`` or ``sampling`` (raw; see
        ``set_chat_settings`` for the typed form); the conversation counts as updated now. A
        title set here is the user's (see ``rename_conversation``)."""
        allowed = {"title", "model", "system_prompt", "sampling"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown conversation fields: {unknown}")
        if "sampling" in changes:
            changes["sampling"] = json.dumps(changes["sampling"])
        if "title" in changes:
            changes["title_edited"] = 1
        sets = ", ".join(f"{k} = ?" for k in changes)
        self._db.execute(
            f"UPDATE conversations SET {sets}, updated_at = ? WHERE id = ?",
            (*changes.values(), time.time(), conversation_id),
        )

    @_saving
    def rename_conversation(self, conversation_id: int, title: str) -> str:
        """Give the conversation the user's ``title`` (kept from automatic titles from then on);
        a blank one goes back to the title from its first message. Returns the title set. Its
        place in the list does not change."""
        title = " ".join(title.split())
        edited = bool(title)
        if not title:
            first = self._db.execute(
                "SELECT content FROM messages WHERE conversation_id = ? AND role = 'user'"
                " ORDER BY id LIMIT 1",
                (conversation_id,),
            ).fetchone()
            title = title_from(first[0]) if first else NEW_CHAT_TITLE
        self._db.execute(
            "UPDATE conversations SET title = ?, title_edited = ? WHERE id = ?",
            (title, int(edited), conversation_id),
        )
        return title

    @_saving
    def set_automatic_title(self, conversation_id: int, title: str) -> bool:
        """Set a title Hearth made (e.g. one the model wrote after the first reply), unless the
        user has named the conversation. Returns whether it was set."""
        title = " ".join(title.split())
        if not title:
            return False
        cur = self._db.execute(
            "UPDATE conversations SET title = ? WHERE id = ? AND title_edited = 0",
            (title, conversation_id),
        )
        return cur.rowcount > 0

    @_saving
    def pin_conversation(self, conversation_id: int, pinned: bool = True) -> None:
        """Pin (or unpin) a conversation: pinned ones head the list."""
        self._db.execute(
            "UPDATE conversations SET pinned = ? WHERE id = ?", (int(pinned), conversation_id)
        )

    @_saving
    def trash_conversation(self, conversation_id: int) -> None:
        """Delete a conversation so that it can still be restored: it leaves the list and the
        search at once, and ``empty_trash`` removes it for good (the window calls it when its
        Undo offer ends; any Hearth opening the chats removes what waited over ``TRASH_KEEP``)."""
        self._db.execute(
            "UPDATE conversations SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
            (time.time(), conversation_id),
        )

    @_saving
    def restore_conversation(self, conversation_id: int) -> bool:
        """Undo ``trash_conversation``; False when it is no longer there to restore."""
        cur = self._db.execute(
            "UPDATE conversations SET deleted_at = NULL WHERE id = ? AND deleted_at IS NOT NULL",
            (conversation_id,),
        )
        return cur.rowcount > 0

    def trashed_conversations(self) -> list[Conversation]:
        """Conversations in the trash, the most recently deleted first."""
        rows = self._db.execute(
            "SELECT * FROM conversations WHERE deleted_at IS NOT NULL ORDER BY deleted_at DESC"
        )
        return [_conversation(r) for r in rows]

    @_saving
    def empty_trash(self, older_than: float = 0.0) -> int:
        """Delete for good the conversations trashed over ``older_than`` seconds ago; returns
        how many."""
        before = time.time() - older_than
        # Looked for first: opening the chats read-only (or beside a busy writer) must not need
        # a write when the trash is empty.
        if not self._db.execute(
            "SELECT 1 FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= ? LIMIT 1",
            (before,),
        ).fetchone():
            return 0
        cur = self._db.execute(
            "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= ?",
            (before,),
        )
        return cur.rowcount

    @_saving
    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a conversation and its messages for good, at once (no undo)."""
        self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # messages and branches

    def messages(self, conversation_id: int) -> list[Message]:
        """The conversation as shown: the selected path from its first message to its last.

        At every message the path goes on with the child selected (or added) last, so other
        versions (edits, regenerations) stay in the store as branches; see ``siblings``,
        ``select`` and ``all_messages``.
        """
        rows = self._db.execute(
            _SELECTED_PATH + "SELECT messages.* FROM path JOIN messages ON messages.id = path.id"
            " ORDER BY path.depth",
            {"conversation": conversation_id},
        )
        return [_message(r) for r in rows]

    def all_messages(self, conversation_id: int) -> list[Message]:
        """Every message of every branch, oldest first (parents come before their children)."""
        rows = self._db.execute(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        )
        return [_message(r) for r in rows]

    def message(self, message_id: int) -> Message | None:
        row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _message(row) if row else None

    def path_to(self, message_id: int) -> list[Message]:
        """The messages from the conversation's first one down to ``message_id``, inclusive
        (what came before it in its branch); empty when there is no such message."""
        rows = self._db.execute(
            "WITH RECURSIVE up(id, depth) AS (SELECT ?, 0 UNION ALL"
            " SELECT m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.id"
            " WHERE m.parent_id IS NOT NULL)"
            " SELECT messages.* FROM up JOIN messages ON messages.id = up.id"
            " ORDER BY up.depth DESC",
            (message_id,),
        )
        return [_message(r) for r in rows]

    def children(self, message_id: int) -> list[Message]:
        """The replies (or next messages) under ``message_id``, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM messages WHERE parent_id = ? ORDER BY id", (message_id,)
        )
        return [_message(r) for r in rows]

    def siblings(self, message_id: int) -> Siblings | None:
        """The versions of a message (it and the others under the same parent, oldest first)
        and which of them it is: "2 of 3". None when there is no such message."""
        row = self._db.execute(
            "SELECT conversation_id, parent_id FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row is None:
            return None
        ids = tuple(
            r[0]
            for r in self._db.execute(
                "SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
                (row[0], row[1]),
            )
        )
        return Siblings(ids, ids.index(message_id))

    def path_siblings(self, conversation_id: int) -> dict[int, Siblings]:
        """``siblings`` for every message of the shown path at once (by message id)."""
        groups: dict[int | None, list[int]] = {}
        for r in self._db.execute(
            "SELECT id, parent_id FROM messages WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ):
            groups.setdefault(r[1], []).append(r[0])
        out: dict[int, Siblings] = {}
        for m in self.messages(conversation_id):
            ids = tuple(groups[m.parent_id])
            out[m.id] = Siblings(ids, ids.index(m.id))
        return out

    @_saving
    def select(self, message_id: int) -> None:
        """Show the branch through ``message_id``: it and its ancestors become the selected
        versions; below it the path follows the versions selected (or added) last. Kept in the
        database, so the conversation reopens as it was left."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT conversation_id FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                return
            self._db.execute(
                "WITH RECURSIVE up(id) AS (SELECT ? UNION ALL"
                " SELECT m.parent_id FROM messages m JOIN up ON m.id = up.id"
                " WHERE m.parent_id IS NOT NULL)"
                " UPDATE messages SET selected_at = ? WHERE id IN (SELECT id FROM up)",
                (message_id, self._selection_stamp(row[0])),
            )

    def _selection_stamp(self, conversation_id: int) -> float:
        """Now, or just after the conversation's latest selection if the clock says otherwise
        (a coarse or stepped-back clock must not leave a new choice unselected)."""
        latest = self._db.execute(
            "SELECT max(selected_at) FROM messages WHERE conversation_id = ?", (conversation_id,)
        ).fetchone()[0]
        now = time.time()
        return now if latest is None or now > latest else latest + 1e-3

    @_saving
    def add_message(
        self,
        conversation_id: int,
        role: Role,
        content: str,
        status: Status = "complete",
        model: str = "",
        writer: str | None = None,
        *,
        parent_id: int | Literal["end"] | None = "end",
    ) -> Message:
        """Add a message after ``parent_id`` (None: a first message; by default the end of the
        shown path) as the selected version there; a ``streaming`` one is written by this
        process unless ``writer`` says otherwise. ``ValueError`` when the parent is not a
        message of this conversation."""
        now = time.time()
        if writer is None:
            writer = this_writer() if status == "streaming" else ""
        with self._db:
            # Reads, then writes: taken as a writer at once, or two processes adding messages
            # can deadlock and one fail with "database is locked".
            self._db.execute("BEGIN IMMEDIATE")
            if parent_id == "end":
                last = self._db.execute(
                    _SELECTED_PATH
                    + "SELECT id FROM path WHERE id IS NOT NULL ORDER BY depth DESC LIMIT 1",
                    {"conversation": conversation_id},
                ).fetchone()
                parent = last[0] if last else None
            else:
                parent = parent_id
                if (
                    parent is not None
                    and self._db.execute(
                        "SELECT 1 FROM messages WHERE id = ? AND conversation_id = ?",
                        (parent, conversation_id),
                    ).fetchone()
                    is None
                ):
                    raise ValueError(f"message {parent} is not in conversation {conversation_id}")
            stamp = self._selection_stamp(conversation_id)
            cur = self._db.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, status, model,"
                " created_at, writer, saved_at, selected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, parent, role, content, status, model, now, writer, now, stamp),
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
    def resume_message(self, message_id: int) -> Message:
        """Make a finished reply ``streaming`` again, written by this process, to continue it
        (its text so far stays). ``ValueError`` when it is not a reply that can go on: one
        streaming now, or one that has messages after it."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None or row["role"] != "assistant":
                raise ValueError(f"message {message_id} is not a reply")
            if row["status"] == "streaming":
                raise ValueError("the reply is still being written")
            if self._db.execute(
                "SELECT 1 FROM messages WHERE parent_id = ? LIMIT 1", (message_id,)
            ).fetchone():
                raise ValueError("only the last message of a branch can be continued")
            now = time.time()
            self._db.execute(
                "UPDATE messages SET status = 'streaming', error = NULL, writer = ?, saved_at = ?"
                " WHERE id = ?",
                (this_writer(), now, message_id),
            )
            self._db.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?",
                (now, row["conversation_id"]),
            )
        resumed = self.message(message_id)
        assert resumed is not None
        return resumed

    @_saving
    def delete_message(self, message_id: int) -> None:
        """Delete a message and everything under it (its replies and their branches). The shown
        path then goes on through the version selected before it, if any."""
        self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    # search

    def search(
        self, text: str, *, order: Order = "newest", limit: int = 50, offset: int = 0
    ) -> list[SearchHit]:
        """Messages of all conversations matching what the user typed (any text: it is never
        read as query syntax), the newest first or the best matches first (``order="rank"``).
        Hits may be in branches not shown: ``select(hit.message_id)`` shows one."""
        return search(self._db, text, order=order, limit=limit, offset=offset)

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
        bool(r["pinned"]),
        bool(r["title_edited"]),
        r["deleted_at"],
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

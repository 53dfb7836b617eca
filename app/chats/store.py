"""Conversations and messages in SQLite (WAL), migrated by ``PRAGMA user_version``.

A streaming reply is written while it grows (status ``streaming``), naming its writer; if that
process dies, whichever Hearth process opens the database next marks it ``interrupted``, so
nothing that was on screen is lost and nothing pretends to be done.

A conversation is a tree: every message records its parent, and an edit or a regeneration adds
a sibling instead of replacing anything. What is shown (and what the engine reads) is the
selected path: at each message, the child selected or added last (``messages``, ``select``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from app.chats.chat_settings import ChatSettings
from app.chats.listing import NEW_CHAT_TITLE, TRASH_KEEP, ConversationList
from app.chats.presets import Preset, PresetError, Presets
from app.chats.records import (
    ChatStoreError,
    Conversation,
    Message,
    Role,
    Siblings,
    Status,
    conversation_from_row,
    message_from_row,
    saving,
)
from app.chats.schema import migrate
from app.chats.search import Order, SearchHit, search
from app.chats.transfer import (
    ImportedConversation,
    ImportResult,
    export_conversations,
    import_conversations,
    new_uid,
)
from app.chats.writers import this_writer, writer_alive

__all__ = [
    "NEW_CHAT_TITLE",
    "TRASH_KEEP",
    "ChatSettings",
    "ChatStore",
    "ChatStoreError",
    "Conversation",
    "Message",
    "Preset",
    "PresetError",
    "Presets",
    "Role",
    "SearchHit",
    "Siblings",
    "Status",
]


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


def _read_only(path: Path) -> bool:
    """Whether an existing database cannot be written where it is (a read-only disk or file)."""
    return path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


class ChatStore(ConversationList):
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
            self.presets = Presets(self._db)  # the system-prompt presets, in this database
            # Housekeeping: chats open all the same when it cannot be done now (a busy writer).
            with contextlib.suppress(ChatStoreError):
                self.empty_trash(TRASH_KEEP)
        except sqlite3.Error as e:
            self._db.close()
            if _read_only(Path(path)):
                raise ChatStoreError(
                    f"The chats at {path} are read-only (the file or its folder cannot be "
                    "written), and Hearth saves every message as it goes. Make them writable "
                    "again (the disk, or the file's permissions); Hearth has left them as they "
                    "are."
                ) from None
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

    @saving
    def create_conversation(
        self,
        title: str = NEW_CHAT_TITLE,
        model: str = "",
        system_prompt: str = "",
        sampling: dict[str, Any] | None = None,
    ) -> Conversation:
        now = time.time()
        uid = new_uid()
        cur = self._db.execute(
            "INSERT INTO conversations"
            " (title, model, system_prompt, sampling, created_at, updated_at, uid)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (title, model, system_prompt, json.dumps(sampling or {}), now, now, uid),
        )
        assert cur.lastrowid is not None
        return Conversation(
            cur.lastrowid, title, model, system_prompt, sampling or {}, now, now, uid=uid
        )

    def conversations(self) -> list[Conversation]:
        """The conversation list: pinned ones first, then the newest first (trash left out)."""
        rows = self._db.execute(
            "SELECT * FROM conversations WHERE deleted_at IS NULL"
            " ORDER BY pinned DESC, updated_at DESC, id DESC"
        )
        return [conversation_from_row(r) for r in rows]

    def conversation(self, conversation_id: int) -> Conversation | None:
        """A conversation by id, also one in the trash (its ``deleted_at`` says so)."""
        row = self._db.execute(
            "SELECT * FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        return conversation_from_row(row) if row else None

    @saving
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

    @saving
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
        return [message_from_row(r) for r in rows]

    def all_messages(self, conversation_id: int) -> list[Message]:
        """Every message of every branch, oldest first (parents come before their children)."""
        rows = self._db.execute(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        )
        return [message_from_row(r) for r in rows]

    def message(self, message_id: int) -> Message | None:
        row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        return message_from_row(row) if row else None

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
        return [message_from_row(r) for r in rows]

    def children(self, message_id: int) -> list[Message]:
        """The replies (or next messages) under ``message_id``, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM messages WHERE parent_id = ? ORDER BY id", (message_id,)
        )
        return [message_from_row(r) for r in rows]

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

    @saving
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

    @saving
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

    @saving
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

    @saving
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

    @saving
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

    # per-conversation settings (system-prompt presets: ``self.presets``)

    def chat_settings(self, conversation_id: int) -> ChatSettings:
        """The conversation's own settings (all ``None``, the app's defaults, when it has none
        or is gone)."""
        row = self._db.execute(
            "SELECT sampling FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        return ChatSettings.from_json(_json_object(row[0])) if row else ChatSettings()

    @saving
    def set_chat_settings(self, conversation_id: int, settings: ChatSettings) -> None:
        """Save the conversation's own settings (``ChatSettings()``: reset to the defaults).
        Its place in the list does not change."""
        self._db.execute(
            "UPDATE conversations SET sampling = ? WHERE id = ?",
            (json.dumps(settings.to_json()), conversation_id),
        )

    # export and import (app/chats/transfer.py)

    def export(self, conversation_ids: Iterable[int] | None = None) -> dict[str, Any]:
        """All conversations (not the trash), or those of ``conversation_ids``, as Hearth's JSON
        export: each whole, every branch included (``transfer.export_markdown`` makes it
        Markdown)."""
        return export_conversations(self._db, conversation_ids)

    @saving
    def import_conversations(self, conversations: list[ImportedConversation]) -> ImportResult:
        """Add imported conversations (``transfer.read_import``), each whole, in short
        transactions that let other writers in (``transfer.import_conversations``); those
        already here (an earlier import of the same file, or Hearth's own export of them) are
        left out and counted as ``skipped``."""
        return import_conversations(self._db, conversations)


def _json_object(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {}

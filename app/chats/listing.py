"""The conversation list's operations beside creating and reading: names, pins, the trash.

A mixin of ``ChatStore`` (app/chats/store.py), which holds the connection.
"""

from __future__ import annotations

import sqlite3
import time

from app.chats.records import Conversation, conversation_from_row, saving
from app.chats.titles import title_from

NEW_CHAT_TITLE = "New chat"
# How long a trashed conversation waits for Undo at most: any Hearth opening the chats deletes
# older ones for good (the window empties its trash itself when its Undo offer ends).
TRASH_KEEP = 3600.0


class ConversationList:
    _db: sqlite3.Connection

    @saving
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

    @saving
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

    @saving
    def pin_conversation(self, conversation_id: int, pinned: bool = True) -> None:
        """Pin (or unpin) a conversation: pinned ones head the list."""
        self._db.execute(
            "UPDATE conversations SET pinned = ? WHERE id = ?", (int(pinned), conversation_id)
        )

    @saving
    def trash_conversation(self, conversation_id: int) -> None:
        """Delete a conversation so that it can still be restored: it leaves the list and the
        search at once, and ``empty_trash`` removes it for good (the window calls it when its
        Undo offer ends; any Hearth opening the chats removes what waited over ``TRASH_KEEP``)."""
        self._db.execute(
            "UPDATE conversations SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
            (time.time(), conversation_id),
        )

    @saving
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
        return [conversation_from_row(r) for r in rows]

    @saving
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

"""System-prompt presets: named prompts to pick for a conversation, one of them the default.

They live in the chat database, not in the settings file: they are the user's writing, like
the chats; the window and ``hearth`` commands may change them at the same time, which SQLite's
transactions handle (the settings file is written whole by whoever saves last); and their names
stay unique in any letter case, which a UNIQUE index keeps true under any interleaving.
Reached as ``ChatStore.presets``.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from app.chats.records import saving


@dataclass(frozen=True)
class Preset:
    id: int
    name: str
    text: str
    is_default: bool
    created_at: float
    updated_at: float


class PresetError(ValueError):
    """A preset cannot be saved as asked; ``str(e)`` is meant for the user."""


class Presets:
    """The presets of one chat database (its connection: the store's thread only). Writes
    raise ``ChatStoreError`` when the database cannot be written, like the store's."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def all(self) -> list[Preset]:
        """Every preset, the default first, then by name."""
        rows = self._db.execute(
            "SELECT * FROM system_prompts ORDER BY is_default DESC, name COLLATE NOCASE, id"
        )
        return [_preset(r) for r in rows]

    def get(self, preset_id: int) -> Preset | None:
        row = self._db.execute("SELECT * FROM system_prompts WHERE id = ?", (preset_id,)).fetchone()
        return _preset(row) if row else None

    def default(self) -> Preset | None:
        """The preset new conversations start with, if one is the default."""
        row = self._db.execute("SELECT * FROM system_prompts WHERE is_default = 1").fetchone()
        return _preset(row) if row else None

    def system_prompt_for_new_chat(self, fallback: str) -> str:
        """The default preset's text, or ``fallback`` (Settings' default system prompt) when no
        preset is the default."""
        chosen = self.default()
        return chosen.text if chosen is not None else fallback

    @saving
    def save(self, name: str, text: str, *, default: bool = False) -> Preset:
        """A new preset; ``PresetError`` when the name is blank or taken."""
        name = _name(name)
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if default:
                self._db.execute("UPDATE system_prompts SET is_default = 0 WHERE is_default = 1")
            try:
                cur = self._db.execute(
                    "INSERT INTO system_prompts (name, text, is_default, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, text, int(default), now, now),
                )
            except sqlite3.IntegrityError:
                raise PresetError(f"A preset named “{name}” exists already.") from None
        assert cur.lastrowid is not None
        return Preset(cur.lastrowid, name, text, default, now, now)

    @saving
    def update(self, preset_id: int, *, name: str | None = None, text: str | None = None) -> Preset:
        """Rename a preset or change its text; ``PresetError`` as for ``save``, or when it is
        gone. (Conversations keep the system prompt they were given.)"""
        changes: dict[str, object] = {}
        if name is not None:
            changes["name"] = _name(name)
        if text is not None:
            changes["text"] = text
        changes["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in changes)
        try:
            cur = self._db.execute(
                f"UPDATE system_prompts SET {sets} WHERE id = ?", (*changes.values(), preset_id)
            )
        except sqlite3.IntegrityError:
            raise PresetError(f"A preset named “{changes['name']}” exists already.") from None
        if cur.rowcount == 0:
            raise PresetError("That preset no longer exists.")
        saved = self.get(preset_id)
        assert saved is not None
        return saved

    @saving
    def delete(self, preset_id: int) -> None:
        """Delete a preset (conversations keep the system prompt they were given from it)."""
        self._db.execute("DELETE FROM system_prompts WHERE id = ?", (preset_id,))

    @saving
    def set_default(self, preset_id: int | None) -> None:
        """Make a preset the default for new conversations (None: none is); ``PresetError``
        when it is gone (the default stays as it was)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE system_prompts SET is_default = 0 WHERE is_default = 1")
            if preset_id is not None:
                cur = self._db.execute(
                    "UPDATE system_prompts SET is_default = 1 WHERE id = ?", (preset_id,)
                )
                if cur.rowcount == 0:
                    raise PresetError("That preset no longer exists.")


def _name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise PresetError("A preset needs a name.")
    return name


def _preset(r: sqlite3.Row) -> Preset:
    return Preset(
        r["id"], r["name"], r["text"], bool(r["is_default"]), r["created_at"], r["updated_at"]
    )

"""What the chat store hands out (conversations, messages, a message's versions) and its error."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from app.chats.chat_settings import ChatSettings

Role = Literal["system", "user", "assistant"]
Status = Literal["complete", "streaming", "interrupted", "error"]


@dataclass
class Conversation:
    id: int
    title: str
    model: str
    system_prompt: str
    sampling: dict[str, Any]  # as stored; typed: ``settings`` below
    created_at: float
    updated_at: float
    pinned: bool = False
    title_edited: bool = False  # the user named it: automatic titles leave it alone
    deleted_at: float | None = None  # in the trash since then (see ChatStore.trash_conversation)
    uid: str = ""  # the same conversation in any database (export, import)

    @property
    def settings(self) -> ChatSettings:
        """Its own sampling, context and thinking settings (None: the app's default)."""
        return ChatSettings.from_json(self.sampling)


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


def conversation_from_row(r: sqlite3.Row) -> Conversation:
    raw = r["sampling"]
    try:
        # Most chats keep the defaults ("{}"): the sidebar reads every row at each change.
        sampling = json.loads(raw) if raw != "{}" else {}
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
        r["uid"] or "",
    )


def message_from_row(r: sqlite3.Row) -> Message:
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


class ChatStoreError(Exception):
    """The chat database cannot be used; ``str(e)`` is meant for the user."""


_Method = TypeVar("_Method", bound=Callable[..., Any])


def saving(method: _Method) -> _Method:
    """A write to the database, whose failure (a full disk, a read-only or vanished file) is a
    ChatStoreError saying so; what was saved before stays as it was (SQLite's transactions)."""

    @functools.wraps(method)
    def write(self: Any, *args: Any, **kwargs: Any) -> Any:
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

"""Export and import of conversations.

- Hearth's JSON (``{"format": "hearth-chats", "version": 2, ...}``): every conversation whole,
  its tree of messages included (``parent_id``, and ``selected_at``, which says which version is
  shown), so an export imports back to the same content. Version 1 files (before trees) import
  too.
- Markdown: each conversation as it is shown (its selected path), for reading.
- ChatGPT's ``conversations.json`` (or the export's ZIP archive): see app/chats/chatgpt.py.

A conversation carries a ``uid`` that stays with it through exports (a ChatGPT one keeps
ChatGPT's id), so importing the same file again adds nothing twice.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import sqlite3
import time
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, get_args

from app.chats.records import Role, Status

FORMAT = "hearth-chats"
VERSION = 2


class TransferError(Exception):
    """A file cannot be imported; ``str(e)`` is meant for the user."""


@dataclass
class ImportedMessage:
    key: str  # unique within its conversation
    parent: str | None  # the parent's key; None for a first message
    role: Role
    content: str
    status: Status = "complete"
    error: str | None = None
    model: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    selected_at: float = 0.0  # among siblings, the highest is shown


@dataclass
class ImportedConversation:
    uid: str  # the same conversation is never imported twice
    title: str
    messages: list[ImportedMessage]  # every parent before its children
    model: str = ""
    system_prompt: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    pinned: bool = False
    title_edited: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class ImportResult:
    conversations: int  # added
    messages: int  # added, in those conversations
    skipped: int  # already here from an earlier import or export
    ids: tuple[int, ...] = ()  # the added conversations' ids


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'s' if n != 1 else ''}"


def import_summary(result: ImportResult, name: str) -> str:
    """What an import of the file ``name`` tells the user, in the window and the command line."""
    if not result.conversations and not result.skipped:
        return f"No conversations found in {name}."
    if not result.conversations:
        return f"Nothing new in {name}: its {_count(result.skipped, 'conversation')} are here."
    line = (
        f"Imported {_count(result.conversations, 'conversation')} with "
        f"{_count(result.messages, 'message')}"
    )
    if result.skipped:
        line += f" ({_count(result.skipped, 'conversation')} already here, left as they are)"
    return line + "."


def new_uid() -> str:
    return uuid.uuid4().hex


# export


def export_conversations(
    db: sqlite3.Connection, conversation_ids: Iterable[int] | None = None
) -> dict[str, Any]:
    """All conversations (not the trash), or those of ``conversation_ids`` (trashed or not), as
    Hearth's JSON export: the newest first, each with every message of every branch."""
    if conversation_ids is None:
        rows = db.execute(
            "SELECT * FROM conversations WHERE deleted_at IS NULL"
            " ORDER BY pinned DESC, updated_at DESC, id DESC"
        ).fetchall()
    else:
        wanted = sorted(set(conversation_ids))
        rows = [
            r
            for i in wanted
            for r in db.execute("SELECT * FROM conversations WHERE id = ?", (i,)).fetchall()
        ]
        rows.sort(key=lambda r: (-r["pinned"], -r["updated_at"], -r["id"]))
    out = []
    for c in rows:
        messages = db.execute(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (c["id"],)
        )
        out.append(
            {
                "id": c["id"],  # this database's; ``uid`` is the conversation's everywhere
                "uid": c["uid"],
                "title": c["title"],
                "title_edited": bool(c["title_edited"]),
                "pinned": bool(c["pinned"]),
                "model": c["model"],
                "system_prompt": c["system_prompt"],
                "settings": _json_object(c["sampling"]),
                "created_at": c["created_at"],
                "updated_at": c["updated_at"],
                "messages": [
                    {
                        "id": m["id"],
                        "parent_id": m["parent_id"],
                        "role": m["role"],
                        "content": m["content"],
                        "status": m["status"],
                        "error": m["error"],
                        "model": m["model"],
                        "stats": _json_object(m["stats"]),
                        "created_at": m["created_at"],
                        "selected_at": m["selected_at"],
                    }
                    for m in messages
                ],
            }
        )
    return {"format": FORMAT, "version": VERSION, "exported_at": time.time(), "conversations": out}


def shown_path(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages of an exported conversation as shown: from the first, at each step the
    child selected last (as ``ChatStore.messages`` picks them)."""
    children: dict[Any, list[dict[str, Any]]] = {}
    for m in messages:
        children.setdefault(m.get("parent_id"), []).append(m)
    path: list[dict[str, Any]] = []
    parent: Any = None
    seen: set[Any] = set()
    while parent not in seen and (options := children.get(parent)):
        seen.add(parent)
        chosen = max(options, key=lambda m: (m.get("selected_at", 0) or 0, m.get("id", 0) or 0))
        path.append(chosen)
        parent = chosen.get("id")
    return path


def export_markdown(data: dict[str, Any]) -> str:
    """Hearth's JSON export as Markdown: each conversation as it is shown, a message with other
    versions marked with which one it is."""
    parts: list[str] = []
    for c in data["conversations"]:
        parts.append(f"# {c['title']}\n")
        if c.get("model"):
            parts.append(f"*Model: {c['model']}*\n")
        if c.get("system_prompt"):
            parts.append(f"> **System:** {c['system_prompt']}\n")
        siblings: dict[Any, list[Any]] = {}
        for m in c["messages"]:
            siblings.setdefault(m.get("parent_id"), []).append(m.get("id"))
        for m in shown_path(c["messages"]):
            who = {"user": "You", "assistant": "Assistant", "system": "System"}[m["role"]]
            notes = []
            versions = siblings[m.get("parent_id")]
            if len(versions) > 1:
                notes.append(f"version {versions.index(m.get('id')) + 1} of {len(versions)}")
            if m["status"] != "complete":
                notes.append(m["status"])
            note = f" *({', '.join(notes)})*" if notes else ""
            parts.append(f"**{who}**{note}:\n\n{m['content']}\n")
    return "\n".join(parts)


# import


def read_import(path: Path) -> list[ImportedConversation]:
    """The conversations in a file to import: Hearth's JSON export, ChatGPT's
    ``conversations.json``, or ChatGPT's export archive (a ZIP holding it)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("conversations.json")]
                if not names:
                    raise TransferError(
                        f"{path.name} is a ZIP archive without a conversations.json in it."
                    )
                raw = archive.read(min(names, key=len))
        else:
            raw = path.read_bytes()
    except OSError as e:
        raise TransferError(f"{path} cannot be read: {e.strerror or e}.") from None
    except zipfile.BadZipFile as e:
        raise TransferError(f"{path.name} is a damaged ZIP archive ({e}).") from None
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        raise TransferError(
            f"{path.name} is not JSON: import Hearth's JSON export or ChatGPT's conversations.json."
        ) from None
    return parse_import(data, path.name)


def parse_import(data: Any, name: str = "the file") -> list[ImportedConversation]:
    """The conversations in decoded JSON, whichever of the known formats it is."""
    from app.chats.chatgpt import chatgpt_conversations, looks_like_chatgpt

    if isinstance(data, dict) and data.get("format") == FORMAT:
        version = data.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise TransferError(
                f"{name} is from a newer Hearth (export version {version}); update Hearth."
            )
        return hearth_conversations(data, name)
    if looks_like_chatgpt(data):
        return chatgpt_conversations(data)
    raise TransferError(f"{name} is neither a Hearth export nor ChatGPT's conversations.json.")


def hearth_conversations(
    data: dict[str, Any], name: str = "the file"
) -> list[ImportedConversation]:
    """The conversations of Hearth's JSON export (any version)."""
    conversations = data.get("conversations")
    if not isinstance(conversations, list):
        raise TransferError(f"{name} has no list of conversations.")
    out = []
    for n, c in enumerate(conversations, start=1):
        if not isinstance(c, dict) or not isinstance(c.get("messages"), list):
            raise TransferError(f"Conversation {n} in {name} has no list of messages.")
        messages: list[ImportedMessage] = []
        for m in c["messages"]:
            role = m.get("role") if isinstance(m, dict) else None
            if role not in get_args(Role) or not isinstance(m.get("content"), str):
                raise TransferError(f"Conversation {n} in {name} has a message without a role.")
            created = _number(m.get("created_at"))
            status = m.get("status")
            if status not in get_args(Status) or status == "streaming":
                status = "interrupted" if status == "streaming" else "complete"
            messages.append(
                ImportedMessage(
                    key=str(m.get("id", len(messages))),
                    parent=None if m.get("parent_id") is None else str(m["parent_id"]),
                    role=cast(Role, role),
                    content=m["content"],
                    status=status,
                    error=m["error"] if isinstance(m.get("error"), str) else None,
                    model=m["model"] if isinstance(m.get("model"), str) else "",
                    stats=m["stats"] if isinstance(m.get("stats"), dict) else {},
                    created_at=created,
                    selected_at=_number(m.get("selected_at"), created),
                )
            )
        title = c["title"] if isinstance(c.get("title"), str) else "Imported chat"
        created = _number(c.get("created_at"))
        uid = c.get("uid")
        if not isinstance(uid, str) or not uid:
            # A version 1 export had no uid: the same file must still import only once.
            first = messages[0].content if messages else ""
            digest = hashlib.sha256(json.dumps([title, created, first]).encode()).hexdigest()
            uid = f"hearth-v1:{digest[:32]}"
        settings = c.get("settings")
        out.append(
            ImportedConversation(
                uid=uid,
                title=title,
                messages=ordered(messages),
                model=c["model"] if isinstance(c.get("model"), str) else "",
                system_prompt=c["system_prompt"] if isinstance(c.get("system_prompt"), str) else "",
                sampling=settings if isinstance(settings, dict) else {},
                pinned=c.get("pinned") is True,
                title_edited=c.get("title_edited") is True,
                created_at=created,
                updated_at=_number(c.get("updated_at"), created),
            )
        )
    return out


def ordered(messages: list[ImportedMessage]) -> list[ImportedMessage]:
    """``messages`` with every parent before its children, otherwise in their order (a message
    whose parent is not in the list starts a branch of its own; duplicates and cycles are left
    out)."""
    keys: dict[str, int] = {}
    for i, m in enumerate(messages):
        keys.setdefault(m.key, i)
    children: dict[str | None, list[int]] = {}
    for key, i in keys.items():
        m = messages[i]
        m.parent = m.parent if m.parent in keys and m.parent != key else None
        children.setdefault(m.parent, []).append(i)
    ready = list(children.get(None, []))
    heapq.heapify(ready)
    out: list[ImportedMessage] = []
    while ready:
        m = messages[heapq.heappop(ready)]
        out.append(m)
        for i in children.get(m.key, []):
            heapq.heappush(ready, i)
    return out


# The longest an import holds the database from other writers (the window, `hearth chat`), which
# wait for it: a history of 12,000 chats held it 8 s in one transaction, and the window froze for
# SQLite's 5 s and then could not save its message ("database is locked"). Between two slices
# it lets go for a pause: a writer kept waiting looks again only every 100 ms (SQLite's busy
# handler), and would never find the database free if the next slice began at once.
IMPORT_SLICE_SECONDS = 0.2
IMPORT_PAUSE_SECONDS = 0.1


def import_conversations(
    db: sqlite3.Connection, conversations: list[ImportedConversation]
) -> ImportResult:
    """Add ``conversations``, leaving out those already here (by uid). Each is added whole, in
    transactions of about IMPORT_SLICE_SECONDS each; a failure keeps the conversations added
    before it, and importing the file again adds the rest."""
    added: list[int] = []
    message_count = skipped = 0
    now = time.time()
    waiting = iter(conversations)
    finished = False
    while not finished:
        with db:
            db.execute("BEGIN IMMEDIATE")
            slice_ends = time.monotonic() + IMPORT_SLICE_SECONDS
            for c in waiting:
                if db.execute("SELECT 1 FROM conversations WHERE uid = ?", (c.uid,)).fetchone():
                    skipped += 1
                else:
                    conversation_id, messages = _add_conversation(db, c, now)
                    added.append(conversation_id)
                    message_count += messages
                if time.monotonic() >= slice_ends:
                    break  # commit, let others write, then go on
            else:
                finished = True
        if not finished:
            time.sleep(IMPORT_PAUSE_SECONDS)
    return ImportResult(len(added), message_count, skipped, tuple(added))


def _add_conversation(
    db: sqlite3.Connection, c: ImportedConversation, now: float
) -> tuple[int, int]:
    """Insert ``c`` with its messages; its id and how many messages it has."""
    created = c.created_at or now
    cur = db.execute(
        "INSERT INTO conversations (title, model, system_prompt, sampling, created_at,"
        " updated_at, pinned, title_edited, uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            c.title,
            c.model,
            c.system_prompt,
            json.dumps(c.sampling),
            created,
            c.updated_at or created,
            int(c.pinned),
            int(c.title_edited),
            c.uid,
        ),
    )
    conversation_id = cur.lastrowid
    ids: dict[str, int] = {}
    for m in ordered(c.messages):
        stamp = m.created_at or created
        cur = db.execute(
            "INSERT INTO messages (conversation_id, parent_id, role, content, status,"
            " error, model, stats, created_at, writer, saved_at, selected_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?)",
            (
                conversation_id,
                ids.get(m.parent) if m.parent is not None else None,
                m.role,
                m.content,
                "interrupted" if m.status == "streaming" else m.status,
                m.error,
                m.model,
                json.dumps(m.stats),
                stamp,
                stamp,
                m.selected_at or stamp,
            ),
        )
        assert cur.lastrowid is not None
        ids[m.key] = cur.lastrowid
    assert conversation_id is not None
    return conversation_id, len(ids)


def _number(value: Any, default: float = 0.0) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else default


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

"""Full-text search over every conversation (SQLite FTS5, kept in sync by triggers).

What people type is never FTS5 syntax: each word becomes a quoted prefix term ("tide" finds
"tides"), a "quoted phrase" stays one phrase, and every term must be there. Nothing typed can
raise a syntax error.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Order = Literal["newest", "rank"]

# Markers SQLite puts around matches in a snippet; taken out again into ``highlights``.
_OPEN, _CLOSE = "\ue000", "\ue001"
_TERMS = re.compile(r'"([^"]*)"|(\S+)')


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    title: str
    message_id: int
    role: str
    created_at: float
    snippet: str  # the text around the match, as plain text ("…" where it was cut)
    highlights: tuple[tuple[int, int], ...]  # [start, end) of each match in ``snippet``
    rank: float  # bm25: lower is a better match

    def marked(
        self, before: str, after: str, escape: Callable[[str], str] = lambda text: text
    ) -> str:
        """The snippet with each match between ``before`` and ``after``, the rest passed
        through ``escape`` (e.g. ``html.escape`` with ``<b>``/``</b>`` for a label)."""
        out: list[str] = []
        at = 0
        for start, end in self.highlights:
            out += [escape(self.snippet[at:start]), before, escape(self.snippet[start:end]), after]
            at = end
        out.append(escape(self.snippet[at:]))
        return "".join(out)


def fts_query(text: str) -> str:
    """The FTS5 query for what a user typed ("" when nothing in it can match)."""
    terms: list[str] = []
    for phrase, word in _TERMS.findall(text):
        # A stray quote (an unfinished phrase) is no part of a word.
        term = (phrase or word).replace('"', "").replace(_OPEN, "").replace(_CLOSE, "")
        if not any(ch.isalnum() for ch in term):
            continue  # punctuation only: no token, and FTS5 refuses an empty phrase
        terms.append(f'"{term}"*')
    return " ".join(terms)


def search(
    db: sqlite3.Connection,
    text: str,
    *,
    order: Order = "newest",
    limit: int = 50,
    offset: int = 0,
) -> list[SearchHit]:
    """Messages of every conversation (all branches, not the trash) matching ``text``."""
    query = fts_query(text)
    if not query:
        return []
    by = "m.created_at DESC, m.id DESC" if order == "newest" else "rank, m.id DESC"
    rows = db.execute(
        "SELECT m.id, m.conversation_id, m.role, m.created_at, c.title,"
        " snippet(messages_fts, 0, ?, ?, '…', 16) AS snip, bm25(messages_fts) AS rank"
        " FROM messages_fts"
        " JOIN messages m ON m.id = messages_fts.rowid"
        " JOIN conversations c ON c.id = m.conversation_id"
        " WHERE messages_fts MATCH ? AND c.deleted_at IS NULL"
        f" ORDER BY {by} LIMIT ? OFFSET ?",
        (_OPEN, _CLOSE, query, limit, offset),
    )
    return [_hit(r) for r in rows]


def _hit(r: sqlite3.Row) -> SearchHit:
    plain: list[str] = []
    highlights: list[tuple[int, int]] = []
    length = 0
    start = 0
    for piece in re.split(f"([{_OPEN}{_CLOSE}])", r["snip"]):
        if piece == _OPEN:
            start = length
        elif piece == _CLOSE:
            highlights.append((start, length))
        else:
            plain.append(piece)
            length += len(piece)
    return SearchHit(
        conversation_id=r["conversation_id"],
        title=r["title"],
        message_id=r["id"],
        role=r["role"],
        created_at=r["created_at"],
        snippet="".join(plain),
        highlights=tuple(highlights),
        rank=r["rank"],
    )

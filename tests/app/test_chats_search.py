"""Full-text search across conversations: kept in sync, safe with any query, old chats indexed."""

from __future__ import annotations

import html
import sqlite3
from pathlib import Path

import pytest

from app.chats.schema import MIGRATIONS, statements
from app.chats.search import fts_query
from app.chats.store import ChatStore


@pytest.fixture
def store(tmp_path: Path) -> ChatStore:
    return ChatStore(tmp_path / "chats.sqlite3")


def _fts_intact(store: ChatStore) -> None:
    store._db.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")


def test_finds_a_word_in_another_conversation_with_the_match_marked(store: ChatStore) -> None:
    trip = store.create_conversation("Trip")
    store.add_message(trip.id, "user", "Plan three days in Lisbon, with the old trams.")
    store.add_message(trip.id, "assistant", "Day one: Alfama and tram 28.")
    other = store.create_conversation("Cooking")
    store.add_message(other.id, "user", "A recipe for pastéis de nata?")
    [hit] = store.search("trams")
    assert (hit.conversation_id, hit.title, hit.role) == (trip.id, "Trip", "user")
    assert hit.marked("[", "]") == "Plan three days in Lisbon, with the old [trams]."
    assert hit.snippet == "Plan three days in Lisbon, with the old trams."
    # A word is also the start of longer words; accents fold; newest first by default.
    assert [h.role for h in store.search("tram")] == ["assistant", "user"]
    assert [h.conversation_id for h in store.search("pasteis")] == [other.id]
    assert store.search("PASTÉIS")[0].marked("<b>", "</b>", html.escape) == (
        "A recipe for <b>pastéis</b> de nata?"
    )


def test_all_words_must_match_and_quotes_make_a_phrase(store: ChatStore) -> None:
    c = store.create_conversation()
    store.add_message(c.id, "user", "the quick brown fox")
    store.add_message(c.id, "user", "brown bread, quick")
    assert len(store.search("quick brown")) == 2
    assert len(store.search('"quick brown"')) == 1
    assert store.search("quick zebra") == []


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '""',
        "AND",
        "OR NOT",
        "fox*",
        "^fox",
        "NEAR(a b)",
        "a:b",
        "(",
        ")",
        "-",
        "*",
        "'",
        "col:fox",
        '"unterminated',
        "fox OR",
        "{x}",
        "\ue000",
        "   ",
        "!!!",
        "c++",
        "don't",
    ],
)
def test_no_query_raises(store: ChatStore, query: str) -> None:
    c = store.create_conversation()
    store.add_message(c.id, "user", "fox and c plus plus, don't AND OR NOT")
    store.search(query)  # no sqlite3.OperationalError
    store.search(query, order="rank")


def test_fts_query_quotes_what_users_type() -> None:
    assert fts_query('fox "big dog" or') == '"fox"* "big dog"* "or"*'
    assert fts_query('say "hi') == '"say"* "hi"*'
    assert fts_query("?! --") == ""


def test_the_index_follows_edits_deletes_and_the_trash(store: ChatStore) -> None:
    c = store.create_conversation("Notes")
    m = store.add_message(c.id, "assistant", "", "streaming")
    store.update_message(m.id, content="streaming words about volcanoes")
    assert [h.message_id for h in store.search("volcanoes")] == [m.id]
    store.update_message(m.id, content="now about glaciers")
    assert store.search("volcanoes") == []
    assert len(store.search("glaciers")) == 1
    store.trash_conversation(c.id)
    assert store.search("glaciers") == []
    store.restore_conversation(c.id)
    assert len(store.search("glaciers")) == 1
    store.delete_message(m.id)
    assert store.search("glaciers") == []
    m2 = store.add_message(c.id, "user", "glaciers again")
    store.delete_conversation(c.id)  # messages go by cascade: their index entries too
    assert store.search("glaciers") == []
    assert m2.id
    _fts_intact(store)


def test_rank_order_puts_the_better_match_first(store: ChatStore) -> None:
    c = store.create_conversation()
    best = store.add_message(c.id, "user", "otter otter otter")
    store.add_message(c.id, "user", "an otter in a long sentence about many other river animals")
    assert store.search("otter", order="rank")[0].message_id == best.id
    assert store.search("otter")[0].message_id != best.id  # newest first
    assert len(store.search("otter", limit=1)) == 1
    assert store.search("otter", limit=1, offset=1)[0].message_id == best.id


def test_an_older_database_gets_its_messages_indexed(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    raw = sqlite3.connect(db)
    for script in MIGRATIONS[:3]:
        for statement in statements(script):
            raw.execute(statement)
    raw.execute("PRAGMA user_version = 3")
    raw.execute(
        "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (1, 'x', 1, 1)"
    )
    raw.execute(
        "INSERT INTO messages (conversation_id, role, content, created_at)"
        " VALUES (1, 'user', 'an old word: marmalade', 1)"
    )
    raw.commit()
    raw.close()
    store = ChatStore(db)
    assert [h.title for h in store.search("marmalade")] == ["x"]
    _fts_intact(store)

"""The conversation list: order, pins, names, the trash with undo, titles."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.chats.store import TRASH_KEEP, ChatStore
from app.chats.titles import title_from, title_from_model, title_request


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chats.sqlite3"


def test_pinned_first_then_newest_first(db: Path) -> None:
    store = ChatStore(db)
    old = store.create_conversation("old")
    mid = store.create_conversation("mid")
    new = store.create_conversation("new")
    store.add_message(mid.id, "user", "now mid is the newest")
    assert [c.title for c in store.conversations()] == ["mid", "new", "old"]
    store.pin_conversation(old.id)
    listed = store.conversations()
    assert [c.title for c in listed] == ["old", "mid", "new"]
    assert listed[0].pinned
    store.pin_conversation(old.id, False)
    assert [c.title for c in store.conversations()] == ["mid", "new", "old"]
    assert new.id  # (used)


def test_rename_keeps_the_place_and_wins_over_automatic_titles(db: Path) -> None:
    store = ChatStore(db)
    a = store.create_conversation("a")
    store.add_message(a.id, "user", "Tell me about **tides** please")
    b = store.create_conversation("b")
    assert store.set_automatic_title(a.id, "Tides explained")
    assert store.rename_conversation(a.id, "  My   tides ") == "My tides"
    assert [c.title for c in store.conversations()] == ["b", "My tides"]  # not moved up
    assert not store.set_automatic_title(a.id, "Something else")
    conversation = store.conversation(a.id)
    assert conversation is not None
    assert (conversation.title, conversation.title_edited) == ("My tides", True)
    # A blank name goes back to the title from the first message, and automatic titles again.
    assert store.rename_conversation(a.id, " ") == "Tell me about tides please"
    assert store.set_automatic_title(a.id, "Tides")
    assert store.rename_conversation(b.id, "") == "New chat"


def test_trash_and_undo(db: Path) -> None:
    store = ChatStore(db)
    c = store.create_conversation("keep me")
    store.add_message(c.id, "user", "hello")
    store.trash_conversation(c.id)
    assert store.conversations() == []
    assert [t.title for t in store.trashed_conversations()] == ["keep me"]
    assert store.restore_conversation(c.id)
    assert [x.title for x in store.conversations()] == ["keep me"]
    assert [m.content for m in store.messages(c.id)] == ["hello"]
    assert not store.restore_conversation(c.id)  # nothing to undo twice
    store.trash_conversation(c.id)
    assert store.empty_trash() == 1
    assert not store.restore_conversation(c.id)
    assert store.conversation(c.id) is None
    assert store.all_messages(c.id) == []


def test_old_trash_goes_when_the_chats_are_opened(db: Path) -> None:
    store = ChatStore(db)
    old = store.create_conversation("long gone")
    recent = store.create_conversation("just deleted")
    store.trash_conversation(old.id)
    store.trash_conversation(recent.id)
    store._db.execute(
        "UPDATE conversations SET deleted_at = ? WHERE id = ?",
        (time.time() - TRASH_KEEP - 1, old.id),
    )
    store.close()
    reopened = ChatStore(db)
    assert [c.title for c in reopened.trashed_conversations()] == ["just deleted"]
    assert reopened.restore_conversation(recent.id)


def test_titles_from_the_first_message() -> None:
    assert title_from("  hello\n world ") == "hello world"
    assert title_from("# Plan for **Monday**\n- eggs") == "Plan for Monday eggs"
    assert title_from("```python\nprint(1)\n```\nWhy does this fail?") == "Why does this fail?"
    assert title_from("```\nonly code\n```") == "only code"
    assert title_from("x" * 100).endswith("…")
    assert len(title_from("x" * 100)) == 48


def test_titles_written_by_a_model() -> None:
    [ask] = title_request("How do tides work?", "The moon pulls the oceans.")
    assert ask["role"] == "user"
    assert "How do tides work?" in ask["content"]
    assert title_from_model('Title: "How Tides Work".\n\nMore text') == "How Tides Work"
    assert title_from_model("<think>user asks about tides</think>\n**Tides**") == "Tides"
    gpt_oss = (
        "<|channel|>analysis<|message|>We need a short title.<|end|><|start|>assistant"
        "<|channel|>final<|message|>Tide Tables"
    )
    assert title_from_model(gpt_oss) == "Tide Tables"
    assert title_from_model("<seed:think>hmm</seed:think>Sea Poems") == "Sea Poems"
    assert title_from_model("<think>Okay, so the user wants a title about") == ""
    assert title_from_model("Okay, so the user wants</think>\n\nRiver Facts") == "River Facts"
    assert title_from_model("  \n") == ""

"""Conversations as trees: branches from edits and regenerations, the shown path, migration."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.chats.history import can_continue, engine_messages
from app.chats.schema import MIGRATIONS, statements
from app.chats.store import ChatStore, Conversation
from app.chats.turn import Turn, reply_for
from app.engine.types import GenerationStats, LoadParams
from app.settings import Sampling
from tests.fake_engine import FakeEngine


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chats.sqlite3"


@pytest.fixture
def store(db: Path) -> ChatStore:
    return ChatStore(db)


@pytest.fixture
def engine() -> FakeEngine:
    e = FakeEngine()
    e.words = ["Fine", " thanks", "."]
    return e


def _reply(engine: FakeEngine, turn: Turn, stop_reason: str = "eos") -> None:
    """Stream the engine's reply into ``turn`` as a front end does."""
    reply = reply_for(engine, turn, Sampling(), threading.Event())
    for delta in reply:
        turn.record(delta)
    reply.stats.stop_reason = stop_reason  # type: ignore[assignment]
    turn.finish(reply.stats)


def _chat(store: ChatStore, engine: FakeEngine, *texts: str) -> Conversation:
    conversation = None
    for text in texts:
        turn = Turn.start(
            store, conversation, text, model_path="m.gguf", model_name="M", system_prompt="Sys"
        )
        _reply(engine, turn)
        conversation = turn.conversation
    assert conversation is not None
    return conversation


def _shown(store: ChatStore, conversation_id: int) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in store.messages(conversation_id)]


def test_regenerate_keeps_the_old_reply_as_a_branch_and_shows_the_new(
    store: ChatStore, engine: FakeEngine
) -> None:
    c = _chat(store, engine, "How are you?", "And the weather?")
    first_reply = store.messages(c.id)[1]
    engine.words = ["Very", " well"]
    turn = Turn.regenerate(store, first_reply.id, model_name="M2")
    # The engine read the conversation up to the user message: nothing after it.
    assert turn.history == [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": "How are you?"},
    ]
    _reply(engine, turn)
    assert _shown(store, c.id) == [("user", "How are you?"), ("assistant", "Very well")]
    siblings = store.siblings(turn.reply.id)
    assert siblings is not None
    assert (siblings.position, siblings.count) == (2, 2)
    assert siblings.previous == first_reply.id
    assert siblings.next is None
    # Back to the first version: the path below it comes back too, follow-up included.
    store.select(first_reply.id)
    assert _shown(store, c.id) == [
        ("user", "How are you?"),
        ("assistant", "Fine thanks."),
        ("user", "And the weather?"),
        ("assistant", "Fine thanks."),
    ]
    # Regenerating from the user message itself works the same way.
    user = store.messages(c.id)[0]
    third = Turn.regenerate(store, user.id, model_name="M")
    _reply(engine, third)
    assert store.siblings(third.reply.id).position == 3  # type: ignore[union-attr]
    assert len(store.all_messages(c.id)) == 6


def test_the_selected_path_survives_reopening(db: Path, engine: FakeEngine) -> None:
    store = ChatStore(db)
    c = _chat(store, engine, "Hi")
    reply = store.messages(c.id)[1]
    _reply(engine, Turn.regenerate(store, reply.id, model_name="M"))
    store.select(reply.id)  # the user went back to the first reply and closed the window
    store.close()
    reopened = ChatStore(db)
    shown = reopened.messages(c.id)
    assert [m.id for m in shown] == [shown[0].id, reply.id]
    positions = reopened.path_siblings(c.id)
    assert (positions[reply.id].position, positions[reply.id].count) == (1, 2)
    assert positions[shown[0].id].count == 1


def test_edit_makes_a_new_version_of_the_message_and_replies_to_it(
    store: ChatStore, engine: FakeEngine
) -> None:
    c = _chat(store, engine, "Capital of France?", "And of Spain?", "And Italy?")
    second = store.messages(c.id)[2]
    engine.words = ["Lisbon"]
    turn = Turn.edit(store, second.id, "And of Portugal?", model_name="M")
    assert turn.history == [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Fine thanks."},
        {"role": "user", "content": "And of Portugal?"},
    ]
    _reply(engine, turn)
    assert _shown(store, c.id) == [
        ("user", "Capital of France?"),
        ("assistant", "Fine thanks."),
        ("user", "And of Portugal?"),
        ("assistant", "Lisbon"),
    ]
    versions = store.siblings(turn.user.id)
    assert versions is not None
    assert (versions.ids, versions.position) == ((second.id, turn.user.id), 2)
    # The engine's next history is the shown path only: the old question is not in it.
    history = engine_messages(c, store.messages(c.id))
    assert "And of Spain?" not in str(history)
    assert "And Italy?" not in str(history)
    # The first message can be edited too: a second root.
    first = store.messages(c.id)[0]
    _reply(engine, Turn.edit(store, first.id, "Capital of Peru?", model_name="M"))
    assert _shown(store, c.id) == [("user", "Capital of Peru?"), ("assistant", "Lisbon")]
    assert store.siblings(store.messages(c.id)[0].id).count == 2  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not a user message"):
        Turn.edit(store, store.messages(c.id)[1].id, "x", model_name="M")


def test_a_new_message_follows_the_shown_branch(store: ChatStore, engine: FakeEngine) -> None:
    c = _chat(store, engine, "One")
    reply = store.messages(c.id)[1]
    _reply(engine, Turn.regenerate(store, reply.id, model_name="M"))
    store.select(reply.id)
    conversation = store.conversation(c.id)
    turn = Turn.start(
        store, conversation, "Two", model_path="m", model_name="M", system_prompt="Sys"
    )
    assert turn.user.parent_id == reply.id
    assert [m["content"] for m in turn.history] == ["Sys", "One", "Fine thanks.", "Two"]


def test_continue_a_reply_cut_by_the_token_limit(store: ChatStore, engine: FakeEngine) -> None:
    conversation = None
    turn = Turn.start(
        store, conversation, "Count", model_path="m", model_name="M", system_prompt=""
    )
    engine.words = ["one", " two"]
    engine.load("m", LoadParams())
    _reply(engine, turn, stop_reason="length")
    cut = store.message(turn.reply.id)
    assert cut is not None
    assert can_continue(cut)
    engine.words = [" three", "."]
    more = Turn.continue_reply(store, cut.id)
    assert more.reply.id == cut.id
    assert store.message(cut.id).status == "streaming"  # type: ignore[union-attr]
    _reply(engine, more)
    # The engine continued the template's prompt after the reply so far, mid-sentence.
    assert engine.calls[-1] == [{"role": "user", "content": "<user>Count</user><assistant>one two"}]
    done = store.message(cut.id)
    assert done is not None
    assert (done.content, done.status) == ("one two three.", "complete")
    assert done.stats["generated_tokens"] == 4  # both parts counted
    assert more.new_text == " three."
    assert len(store.all_messages(turn.conversation.id)) == 2  # the same message, no new one
    assert not can_continue(done)  # it ended on its own this time
    with pytest.raises(ValueError, match="stopped early"):
        Turn.continue_reply(store, done.id)


def test_only_the_last_reply_of_a_branch_can_be_continued(
    store: ChatStore, engine: FakeEngine
) -> None:
    c = _chat(store, engine, "a", "b")
    first_reply = store.messages(c.id)[1]
    store.update_message(first_reply.id, status="interrupted")
    with pytest.raises(ValueError, match="last message of a branch"):
        Turn.continue_reply(store, first_reply.id)
    assert store.message(first_reply.id).status == "interrupted"  # type: ignore[union-attr]


def test_delete_a_message_and_what_hangs_under_it(store: ChatStore, engine: FakeEngine) -> None:
    c = _chat(store, engine, "a", "b", "c")
    reply_a = store.messages(c.id)[1]
    _reply(engine, Turn.regenerate(store, reply_a.id, model_name="M"))
    store.select(reply_a.id)
    b = store.messages(c.id)[2]
    store.delete_message(b.id)
    assert _shown(store, c.id) == [("user", "a"), ("assistant", "Fine thanks.")]
    store.delete_message(reply_a.id)  # the other version of the reply is shown instead
    shown = store.messages(c.id)
    assert len(shown) == 2
    assert shown[1].id != reply_a.id
    assert len(store.all_messages(c.id)) == 2
    store.delete_message(shown[0].id)
    assert store.messages(c.id) == []


def test_failed_edit_leaves_the_old_version_shown(store: ChatStore, engine: FakeEngine) -> None:
    from app.chats.store import ChatStoreError

    c = _chat(store, engine, "a")
    user = store.messages(c.id)[0]
    real_add = store.add_message
    calls = []

    def add_then_fail(*args: object, **kwargs: object) -> object:
        calls.append(args)
        if len(calls) == 2:
            raise ChatStoreError("The disk is full")
        return real_add(*args, **kwargs)  # type: ignore[arg-type]

    store.add_message = add_then_fail  # type: ignore[method-assign]
    with pytest.raises(ChatStoreError):
        Turn.edit(store, user.id, "b", model_name="M")
    store.add_message = real_add  # type: ignore[method-assign]
    assert _shown(store, c.id) == [("user", "a"), ("assistant", "Fine thanks.")]
    assert len(store.all_messages(c.id)) == 2


def _v2_database(db: Path) -> None:
    """A database as Hearth left it at schema 2, with two conversations in it."""
    raw = sqlite3.connect(db)
    for script in MIGRATIONS[:2]:
        for statement in statements(script):
            raw.execute(statement)
    raw.execute("PRAGMA user_version = 2")
    raw.executescript(
        """
        INSERT INTO conversations VALUES (1, 'Old chat', 'm.gguf', 'Be brief.', '{}', 10, 30);
        INSERT INTO conversations VALUES (2, 'Newer chat', 'm.gguf', '', '{}', 40, 50);
        INSERT INTO messages (id, conversation_id, parent_id, role, content, status, created_at)
            VALUES (1, 1, NULL, 'user', 'first question', 'complete', 10),
                   (2, 1, 1, 'assistant', 'first answer', 'complete', 11),
                   (3, 1, 2, 'user', 'second question', 'complete', 20),
                   (4, 1, 3, 'assistant', 'second answer', 'interrupted', 21),
                   (5, 2, NULL, 'user', 'elsewhere', 'complete', 40);
        """
    )
    raw.commit()
    raw.close()


def test_a_schema_2_database_with_chats_migrates(db: Path, engine: FakeEngine) -> None:
    _v2_database(db)
    store = ChatStore(db)
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    raw.close()
    assert [c.title for c in store.conversations()] == ["Newer chat", "Old chat"]
    assert [m.content for m in store.messages(1)] == [
        "first question",
        "first answer",
        "second question",
        "second answer",
    ]
    assert all(s.count == 1 for s in store.path_siblings(1).values())
    # The old conversation goes on as a tree: a regeneration branches at its last question.
    turn = Turn.regenerate(store, 4, model_name="M")
    _reply(engine, turn)
    assert [m.id for m in store.messages(1)] == [1, 2, 3, turn.reply.id]
    assert store.siblings(turn.reply.id).ids == (4, turn.reply.id)  # type: ignore[union-attr]
    store.close()
    ChatStore(db).close()  # opening again is a no-op


@pytest.mark.parametrize("start", ["fresh", "schema 2"])
def test_processes_opening_the_chats_at_once_migrate_them_once(db: Path, start: str) -> None:
    if start == "schema 2":
        _v2_database(db)
    script = (
        "import sys\n"
        "from app.chats.store import ChatStore\n"
        "s = ChatStore(sys.argv[1])\n"
        "print(len(s.search('question')))\n"
    )
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(db)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    found = 2 if start == "schema 2" else 0  # each message indexed once, not once per opener
    assert [out.strip() for out, _ in results] == [str(found)] * 3
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    raw.close()


def test_statements_keep_trigger_bodies_whole() -> None:
    script = """
    CREATE TABLE t (x);
    CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN
        INSERT INTO t VALUES (1); UPDATE t SET x = 2;
    END;
    """
    assert len(statements(script)) == 2


def test_an_explicit_parent_must_be_in_the_conversation(store: ChatStore) -> None:
    a = store.create_conversation()
    b = store.create_conversation()
    m = store.add_message(a.id, "user", "hi")
    with pytest.raises(ValueError, match="not in conversation"):
        store.add_message(b.id, "assistant", "x", parent_id=m.id)
    assert store.messages(b.id) == []


def test_stats_of_a_stopped_continuation_keep_the_earlier_figures(
    store: ChatStore, engine: FakeEngine
) -> None:
    c = _chat(store, engine, "go")
    reply = store.messages(c.id)[1]
    store.update_message(reply.id, status="interrupted")
    more = Turn.continue_reply(store, reply.id)
    more.record(" on")
    more.stop()
    saved = store.message(reply.id)
    assert saved is not None
    assert saved.content == "Fine thanks. on"
    assert saved.stats["generated_tokens"] == 3
    assert GenerationStats(**saved.stats).stop_reason == "eos"


def test_a_failed_continuation_leaves_the_reply_as_it_was(
    store: ChatStore, engine: FakeEngine
) -> None:
    c = _chat(store, engine, "go")
    reply = store.messages(c.id)[1]
    store.update_message(reply.id, stats={"stop_reason": "length", "generated_tokens": 3})
    more = Turn.continue_reply(store, reply.id)
    assert more.fail("The server formats its own prompts.") == "error"
    assert more.error == "The server formats its own prompts."  # for the front end to show
    saved = store.message(reply.id)
    assert saved is not None
    assert (saved.content, saved.status, saved.error) == ("Fine thanks.", "complete", None)
    assert more.saved_reply().status == "complete"
    assert can_continue(saved)  # it can be tried again
    assert engine_messages(c, store.messages(c.id))[-1]["content"] == "Fine thanks."

"""Regenerate, edit and continue through the real llama.cpp engine (a tiny generated model)."""

from __future__ import annotations

import threading
from pathlib import Path

from app.chats.history import can_continue
from app.chats.store import ChatStore
from app.chats.turn import Turn, reply_for
from app.engine.llama_cpp_engine import LlamaCppEngine
from app.settings import Sampling

GREEDY = Sampling(temperature=0.0, max_tokens=4, seed=1)


def _run(engine: LlamaCppEngine, turn: Turn) -> None:
    reply = reply_for(engine, turn, GREEDY, threading.Event())
    for delta in reply:
        turn.record(delta)
    turn.finish(reply.stats)


def test_continue_goes_on_from_the_cut_reply_and_reuses_the_prompt(
    tmp_path: Path, engine: LlamaCppEngine
) -> None:
    store = ChatStore(tmp_path / "chats.sqlite3")
    first = Turn.start(
        store, None, "hello world", model_path="m", model_name="tiny", system_prompt="Be brief."
    )
    _run(engine, first)
    cut = store.message(first.reply.id)
    assert cut is not None
    assert cut.stats["stop_reason"] == "length"  # four tokens, then the limit
    assert can_continue(cut)
    more = Turn.continue_reply(store, cut.id)
    _run(engine, more)
    done = store.message(cut.id)
    assert done is not None
    assert done.content.startswith(cut.content)
    assert len(done.content) > len(cut.content)
    assert done.stats["generated_tokens"] == 8
    # The template's prompt was already in the cache: only the reply's text is read again.
    assert more.stats is not None
    assert more.stats.prompt_tokens_evaluated < more.stats.prompt_tokens // 2
    # A regeneration and an edit run through the same engine and keep the branches.
    again = Turn.regenerate(store, cut.id, model_name="tiny")
    _run(engine, again)
    edited = Turn.edit(store, first.user.id, "hello there", model_name="tiny")
    _run(engine, edited)
    shown = store.messages(first.conversation.id)
    assert shown[0].content == "hello there"
    assert shown[1].content
    assert store.siblings(shown[0].id).count == 2  # type: ignore[union-attr]
    assert len(store.all_messages(first.conversation.id)) == 5

"""The engine in its own process: same behaviour as in-process, and a crash there is survivable."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.pipe import Chat, Load, Unload
from app.engine.process import CRASHED, ProcessEngine, continues
from app.engine.types import EngineError, LoadParams
from app.settings import Sampling

PARAMS = LoadParams(context_length=512, threads=2)


@pytest.fixture
def engine() -> Iterator[ProcessEngine]:
    e = ProcessEngine()
    yield e
    e.close()


def test_streams_with_stats(engine: ProcessEngine, tiny_model: Path) -> None:
    info = engine.load(str(tiny_model), PARAMS)
    assert info.context_length == 512
    assert engine.loaded == info
    reply = engine.chat(
        [{"role": "user", "content": "hello"}], Sampling(max_tokens=12, seed=1), threading.Event()
    )
    deltas = list(reply)
    assert deltas
    assert 1 <= reply.stats.generated_tokens <= 12
    assert reply.stats.prompt_tokens > 0


def test_stop_mid_reply(engine: ProcessEngine, tiny_model: Path) -> None:
    engine.load(str(tiny_model), PARAMS)
    cancel = threading.Event()
    sampling = Sampling(max_tokens=400, temperature=0, repeat_penalty=1.0)
    reply = engine.chat([{"role": "user", "content": "go"}], sampling, cancel)
    after = 0
    for _ in reply:
        if cancel.is_set():
            after += 1
        cancel.set()
    assert reply.stats.stop_reason in ("cancelled", "eos")
    # The child stops soon after Stop while tokens keep streaming in. The tiny model makes
    # thousands of tokens a second, so a busy machine can have a dozen already in the pipe;
    # the bug this guards against let all ~400 through.
    assert after <= 40
    # The next reply is not cancelled by the last one's Stop.
    again = engine.chat(
        [{"role": "user", "content": "a"}], Sampling(max_tokens=3), threading.Event()
    )
    list(again)
    assert again.stats.stop_reason != "cancelled"


def test_prepare_is_answered_by_nothing_and_speeds_up_the_next_reply(
    engine: ProcessEngine, tiny_model: Path
) -> None:
    engine.prepare([])  # nothing loaded: nothing happens
    engine.load(str(tiny_model), PARAMS)
    system = [{"role": "system", "content": "Be brief."}]
    message = [*system, {"role": "user", "content": "hi"}]
    cold = engine.chat(message, Sampling(max_tokens=3, seed=2), threading.Event())  # type: ignore[arg-type]
    cold_text = "".join(cold)
    engine.unload()
    engine.load(str(tiny_model), PARAMS)
    engine.prepare(system)  # type: ignore[arg-type]
    # The protocol stays in step (prepare sends no answer), and the reply is the same.
    warm = engine.chat(message, Sampling(max_tokens=3, seed=2), threading.Event())  # type: ignore[arg-type]
    assert "".join(warm) == cold_text
    assert warm.stats.prompt_tokens == cold.stats.prompt_tokens
    # Unless the chat arrived while the child was still preparing (then it stopped midway),
    # only the message and the assistant header were left to evaluate.
    assert warm.stats.prompt_tokens_evaluated < cold.stats.prompt_tokens_evaluated


@pytest.mark.slow
def test_interrupt_from_another_thread_stops_the_reply(
    engine: ProcessEngine, starter_model: Path
) -> None:
    """The GUI's Stop reaches the child directly; the reply's own cancel event is never set."""
    engine.load(str(starter_model), PARAMS)
    sampling = Sampling(max_tokens=400, temperature=0)
    story = [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}]
    reply = engine.chat(story, sampling, threading.Event())  # type: ignore[arg-type]
    pieces = iter(reply)
    next(pieces)  # generating (a real model, tens of tokens a second)
    engine.interrupt()
    list(pieces)
    assert reply.stats.stop_reason == "cancelled"
    assert reply.stats.generated_tokens < 100
    # The next reply runs normally.
    again = engine.chat(
        [{"role": "user", "content": "a"}], Sampling(max_tokens=3), threading.Event()
    )
    list(again)
    assert again.stats.stop_reason != "cancelled"


def test_preparing_goes_on_only_for_a_chat_that_continues_the_conversation() -> None:
    system = {"role": "system", "content": "Be brief."}
    asked = {"role": "user", "content": "hi"}
    answered = {"role": "assistant", "content": "Hello!"}
    prepared = [system, asked, answered]
    sampling = Sampling()
    follow_up = [*prepared, {"role": "user", "content": "more"}]
    assert continues(Chat(follow_up, sampling), prepared)
    assert continues(Chat([system, {"role": "user", "content": "new"}], sampling), [system])
    # Another conversation, an edited earlier message, or another command: stop preparing.
    other = [{"role": "user", "content": "elsewhere"}, {"role": "user", "content": "x"}]
    assert not continues(Chat(other, sampling), prepared)
    edited = [
        system,
        {"role": "user", "content": "hi!"},
        answered,
        {"role": "user", "content": "x"},
    ]
    assert not continues(Chat(edited, sampling), prepared)
    assert not continues(Load("model.gguf", PARAMS), prepared)
    assert not continues(Unload(), prepared)
    # A draft being prepared: the chat goes on if it sends the draft, or more after it.
    draft = [*prepared, {"role": "user", "content": "the fi"}]
    assert continues(Chat([*prepared, {"role": "user", "content": "the fi"}], sampling), draft)
    assert continues(Chat([*prepared, {"role": "user", "content": "the fire"}], sampling), draft)
    assert not continues(Chat([*prepared, {"role": "user", "content": "a fire"}], sampling), draft)
    assert not continues(
        Chat([*edited[:3], {"role": "user", "content": "the fi"}], sampling), draft
    )
    assert not continues(Chat(prepared, sampling), draft)


def test_a_prepared_draft_is_used_by_the_chat_that_sends_it(
    engine: ProcessEngine, tiny_model: Path
) -> None:
    engine.load(str(tiny_model), PARAMS)
    draft = [{"role": "user", "content": "the fire"}]
    engine.prepare(draft)  # type: ignore[arg-type]
    reply = engine.chat(draft, Sampling(max_tokens=3), threading.Event())  # type: ignore[arg-type]
    list(reply)
    assert reply.stats.prompt_tokens > 0
    assert reply.stats.prompt_tokens_evaluated == 0


def test_load_error_crosses_the_process(
    engine: ProcessEngine, tiny_model: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(tiny_model.read_bytes()[:1000])
    with pytest.raises(EngineError, match=r"ends inside|truncated"):
        engine.load(str(bad), PARAMS)
    assert engine.loaded is None


def test_crash_is_reported_and_engine_restarts(engine: ProcessEngine, tiny_model: Path) -> None:
    engine.load(str(tiny_model), PARAMS)
    os.kill(engine._proc.pid, signal.SIGKILL)
    engine._proc.join(5)
    reply = engine.chat(
        [{"role": "user", "content": "hi"}], Sampling(max_tokens=3), threading.Event()
    )
    with pytest.raises(EngineError, match="stopped unexpectedly"):
        list(reply)
    assert CRASHED.startswith("The engine stopped")
    assert engine.loaded is None
    # The next message starts a fresh process with the same model, as the message promised.
    assert list(
        engine.chat([{"role": "user", "content": "hi"}], Sampling(max_tokens=3), threading.Event())
    )


def test_close_ends_the_process(tiny_model: Path) -> None:
    e = ProcessEngine()
    e.load(str(tiny_model), PARAMS)
    proc = e._proc
    e.close()
    assert not proc.is_alive()


def test_engine_process_logs_to_its_own_file(tiny_model: Path, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "engine.log"
    e = ProcessEngine(log_file=str(log_file))
    try:
        e.load(str(tiny_model), PARAMS)
    finally:
        e.close()
    assert "loaded" in log_file.read_text()

"""The llama.cpp engine on tiny generated models (fast) — streaming, stop, errors, sampling, the
context growing (prefix reuse and preparing ahead: test_engine_prefix.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.engine import native
from app.engine.kv_context import FIRST_CONTEXT
from app.engine.llama_cpp_engine import REPLY_ROOM, LlamaCppEngine, llama
from app.engine.sampling import TokenPicker
from app.engine.types import ChatMessage, EngineError, LoadParams, coalesce
from app.settings import Sampling

PARAMS = LoadParams(context_length=512, threads=2)


def test_load_reports_model(engine: LlamaCppEngine, tiny_model: Path) -> None:
    assert engine.loaded is not None
    assert engine.loaded.path == str(tiny_model)
    assert engine.loaded.template_source == "model"
    assert engine.loaded.context_length == 512
    assert engine.loaded.notice == ""


def test_streams_text_and_stats(engine: LlamaCppEngine) -> None:
    reply = engine.chat(
        [{"role": "user", "content": "hello"}], Sampling(max_tokens=20, seed=3), threading.Event()
    )
    deltas = list(reply)
    assert deltas
    assert all(isinstance(d, str) for d in deltas)
    s = reply.stats
    assert 1 <= s.generated_tokens <= 20
    assert s.prompt_tokens == s.prompt_tokens_evaluated > 0
    assert s.stop_reason in ("eos", "length")
    assert s.time_to_first_token > 0


def test_max_tokens_stops_with_length(engine: LlamaCppEngine, tiny_model_no_template: Path) -> None:
    # Greedy on random weights rarely hits EOS; the limit must end it.
    reply = engine.chat(
        [{"role": "user", "content": "a"}], Sampling(max_tokens=7, temperature=0), threading.Event()
    )
    list(reply)
    assert reply.stats.generated_tokens <= 7
    if reply.stats.generated_tokens == 7:
        assert reply.stats.stop_reason == "length"


def test_same_seed_same_reply(engine: LlamaCppEngine) -> None:
    msgs: list[ChatMessage] = [{"role": "user", "content": "the fire"}]
    one = "".join(engine.chat(msgs, Sampling(max_tokens=15, seed=42), threading.Event()))
    two = "".join(engine.chat(msgs, Sampling(max_tokens=15, seed=42), threading.Event()))
    assert one == two


def test_stop_between_tokens(engine: LlamaCppEngine) -> None:
    cancel = threading.Event()
    reply = engine.chat(
        [{"role": "user", "content": "go"}],
        Sampling(max_tokens=400, temperature=0, repeat_penalty=1.0),
        cancel,
    )
    for got, _ in enumerate(reply, start=1):
        if got == 3:
            cancel.set()
    assert reply.stats.stop_reason in ("cancelled", "eos")
    assert reply.stats.generated_tokens < 400


def test_stop_during_prompt_evaluation(engine: LlamaCppEngine) -> None:
    cancel = threading.Event()
    cancel.set()
    reply = engine.chat([{"role": "user", "content": "hello " * 40}], Sampling(), cancel)
    assert list(reply) == []
    assert reply.stats.stop_reason == "cancelled"
    # The engine is still usable and the cache consistent afterwards.
    again = engine.chat(
        [{"role": "user", "content": "hello"}], Sampling(max_tokens=5), threading.Event()
    )
    list(again)
    assert again.stats.generated_tokens >= 1


def test_long_conversation_drops_oldest_turns(engine: LlamaCppEngine) -> None:
    history: list[ChatMessage] = []
    for i in range(30):
        history += [
            {"role": "user", "content": f"hello world {i} " * 4},
            {"role": "assistant", "content": "the fire " * 4},
        ]
    history.append({"role": "user", "content": "warm"})
    reply = engine.chat(history, Sampling(max_tokens=5), threading.Event())
    list(reply)
    assert reply.stats.messages_dropped > 0
    assert reply.stats.prompt_tokens <= 512


def test_long_conversation_keeps_the_system_prompt_when_dropping_or_is_refused(
    engine: LlamaCppEngine,
) -> None:
    history: list[ChatMessage] = [{"role": "system", "content": "Be brief."}]
    for i in range(30):
        history += [
            {"role": "user", "content": f"hello world {i} " * 4},
            {"role": "assistant", "content": "the fire " * 4},
        ]
    history.append({"role": "user", "content": "warm"})
    kept: list[list[ChatMessage]] = []
    real_format = engine._current().template.format

    def spy(messages: list[ChatMessage], *args: object) -> str:
        kept.append(messages)
        return real_format(messages, *args)  # type: ignore[arg-type]

    engine._current().template.format = spy  # type: ignore[method-assign]
    reply = engine.chat(history, Sampling(max_tokens=5), threading.Event())
    list(reply)
    assert reply.stats.messages_dropped > 0
    assert kept[-1][0] == {"role": "system", "content": "Be brief."}  # the system prompt stays
    assert kept[-1][-1]["content"] == "warm"
    with pytest.raises(EngineError, match="no longer fits this model's context"):
        list(engine.chat(history, Sampling(max_tokens=5, drop_oldest=False), threading.Event()))
    short = engine.chat(history[-3:], Sampling(max_tokens=5, drop_oldest=False), threading.Event())
    list(short)  # what fits is answered whole
    assert short.stats.messages_dropped == 0


def test_single_message_too_long(engine: LlamaCppEngine) -> None:
    reply = engine.chat(
        [{"role": "user", "content": "hello world " * 600}], Sampling(), threading.Event()
    )
    with pytest.raises(EngineError, match="too long"):
        list(reply)


def test_missing_template_is_detected_from_the_vocabulary_and_said(
    tiny_model_no_template: Path,
) -> None:
    e = LlamaCppEngine()
    info = e.load(str(tiny_model_no_template), PARAMS)
    try:
        # The tiny model's vocabulary holds <|im_start|> as one token: ChatML, by detection.
        assert (info.template_source, info.template_name) == ("detected", "chatml")
        assert "no chat template" in info.notice
        assert e.format_prompt([{"role": "user", "content": "x"}]).startswith("<|im_start|>user")
    finally:
        e.unload()


def test_template_override(tiny_model: Path) -> None:
    e = LlamaCppEngine()
    info = e.load(
        str(tiny_model), LoadParams(context_length=512, threads=2, chat_template_override="gemma")
    )
    try:
        assert (info.template_source, info.template_name) == ("override", "gemma")
        assert "<start_of_turn>user" in e.format_prompt([{"role": "user", "content": "x"}])
    finally:
        e.unload()


def test_corrupt_file_is_refused_before_llama_cpp(tiny_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(tiny_model.read_bytes()[: tiny_model.stat().st_size // 2])
    e = LlamaCppEngine()
    with pytest.raises(EngineError, match="truncated"):
        e.load(str(bad), PARAMS)
    assert e.loaded is None


def test_chat_without_model() -> None:
    with pytest.raises(EngineError, match="No model"):
        LlamaCppEngine().chat([], Sampling(), threading.Event())


def test_unload_and_reload(engine: LlamaCppEngine, tiny_model: Path) -> None:
    engine.unload()
    assert engine.loaded is None
    engine.load(str(tiny_model), PARAMS)
    started = time.perf_counter()
    reply = engine.chat(
        [{"role": "user", "content": "a"}], Sampling(max_tokens=3), threading.Event()
    )
    list(reply)
    assert time.perf_counter() - started < 30


def test_unload_hands_freed_memory_back(
    engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr("app.engine.llama_cpp_engine.release_freed_memory", lambda: calls.append(1))
    engine.unload()
    engine.unload()  # nothing loaded: nothing freed
    assert calls == [1]
    monkeypatch.undo()
    native.release_freed_memory()  # runs on this platform without raising


def _reference_chain(lib: Any, engine: LlamaCppEngine, s: Sampling) -> Any:
    """llama.cpp's own sampler chain for these settings, penalties first."""
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    add = lib.llama_sampler_chain_add
    if s.repeat_penalty != 1.0:
        n_vocab = lib.llama_vocab_n_tokens(engine.vocab.handle)
        add(chain, lib.llama_sampler_init_penalties(n_vocab, 64, s.repeat_penalty, 0.0, 0.0))
    if s.temperature <= 0:
        add(chain, lib.llama_sampler_init_greedy())
        return chain
    add(chain, lib.llama_sampler_init_top_k(s.top_k))
    add(chain, lib.llama_sampler_init_top_p(s.top_p, 1))
    add(chain, lib.llama_sampler_init_min_p(s.min_p, 1))
    add(chain, lib.llama_sampler_init_temp(s.temperature))
    add(chain, lib.llama_sampler_init_dist(s.seed))
    return chain


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(temperature=0, repeat_penalty=1.0),
        Sampling(temperature=0, repeat_penalty=1.5),
        Sampling(temperature=1.0, top_k=40, top_p=0.95, min_p=0.02, repeat_penalty=1.3, seed=5),
        Sampling(temperature=1.0, top_k=40, top_p=0.95, min_p=0.02, repeat_penalty=1.0, seed=5),
    ],
    ids=["greedy", "greedy-penalty", "sampled-penalty", "sampled"],
)
def test_token_picker_chooses_what_llama_cpp_chooses(
    engine: LlamaCppEngine, sampling: Sampling
) -> None:
    lib = llama()
    prompt = engine.vocab.tokenize(
        engine.format_prompt([{"role": "user", "content": "hello world the fire"}]).encode()
    )
    one = (lib.llama_token * 1)()

    def generate(pick: Callable[[], int]) -> list[int]:
        engine.context.trim(0)
        assert engine.context.evaluate(prompt, lambda: False)
        tokens = []
        for _ in range(80):
            tokens.append(pick())
            one[0] = tokens[-1]
            assert lib.llama_decode(engine.context.handle, lib.llama_batch_get_one(one, 1)) == 0
        return tokens

    picker = TokenPicker(lib, engine.vocab.handle, sampling)
    ours = generate(lambda: picker.pick(engine.context.handle))
    picker.close()
    chain = _reference_chain(lib, engine, sampling)
    reference = generate(lambda: int(lib.llama_sampler_sample(chain, engine.context.handle, -1)))
    lib.llama_sampler_free(chain)
    assert ours == reference
    if sampling.repeat_penalty != 1.0:  # the penalty changed the reply, so it was compared too
        plain = TokenPicker(lib, engine.vocab.handle, replace(sampling, repeat_penalty=1))
        assert generate(lambda: plain.pick(engine.context.handle)) != ours
        plain.close()


def test_context_starts_small_and_grows_keeping_the_cache(engine_2k: LlamaCppEngine) -> None:
    e = engine_2k
    assert e.loaded is not None
    assert e.loaded.context_length == 2048  # what the user asked for, checked to fit at load
    assert e.context.size == FIRST_CONTEXT == 256
    # ~420 tokens, + REPLY_ROOM
    history: list[ChatMessage] = [{"role": "user", "content": " the" * 100}]
    first = e.chat(history, Sampling(max_tokens=4, seed=1), threading.Event())
    history.append({"role": "assistant", "content": "".join(first)})
    assert len(e.context.cached_tokens) + REPLY_ROOM <= 512
    assert e.context.size == 512  # doubled to fit the prompt and the reply's room
    history.append({"role": "user", "content": " the" * 120})  # past 512: grows again
    second = e.chat(history, Sampling(max_tokens=4, seed=1), threading.Event())
    list(second)
    assert e.context.size == 1024
    # The earlier turns came along in the KV cache: only the new message was evaluated.
    assert second.stats.prompt_tokens_evaluated < second.stats.prompt_tokens - 400


def test_context_grows_while_preparing_not_before_the_first_token(
    engine_2k: LlamaCppEngine,
) -> None:
    e = engine_2k
    words = 1
    while (
        len(
            e.vocab.tokenize(
                e.format_prompt([{"role": "user", "content": " the" * words}]).encode()
            )
        )
        < 180
    ):
        words += 1
    history: list[ChatMessage] = [{"role": "user", "content": " the" * words}]
    first = e.chat(history, Sampling(max_tokens=4, seed=1), threading.Event())
    history.append({"role": "assistant", "content": "".join(first)})
    assert e.context.size == FIRST_CONTEXT  # the prompt and its reply fitted
    e.prepare(history)
    assert e.context.size == 2 * FIRST_CONTEXT  # room for the next message, made ahead
    history.append({"role": "user", "content": " fire" * 20})
    second = e.chat(history, Sampling(max_tokens=2, seed=1), threading.Event())
    list(second)
    assert second.stats.prompt_tokens > FIRST_CONTEXT - REPLY_ROOM  # it would have had to grow
    assert e.context.size == 2 * FIRST_CONTEXT


def test_reply_continues_unchanged_when_the_context_grows_mid_reply(
    engine_2k: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampling = Sampling(temperature=1.0, max_tokens=700, seed=1)
    e = engine_2k
    grown = "".join(e.chat([{"role": "user", "content": "hello"}], sampling, threading.Event()))
    # The reply ran past the first context, twice.
    assert len(e.context.cached_tokens) > 2 * FIRST_CONTEXT
    assert e.context.size == 4 * FIRST_CONTEXT

    assert e.loaded is not None
    path = e.loaded.path
    e.unload()
    monkeypatch.setattr("app.engine.kv_context.FIRST_CONTEXT", 4096)  # no growing
    e.load(path, LoadParams(context_length=2048, threads=2))
    assert e.context.size == 2048
    whole = "".join(e.chat([{"role": "user", "content": "hello"}], sampling, threading.Event()))
    assert grown == whole  # the copied cache is the very same: token for token


def test_reply_goes_on_when_the_cache_cannot_be_copied_into_a_larger_context(
    engine_2k: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The fallback evaluates the cached tokens again in the larger context. Evaluated as one
    batch their numbers differ in the last bits from token-by-token ones, so a sampled reply may
    take another turn afterwards; the cache must still hold exactly the conversation's tokens."""
    e = engine_2k
    monkeypatch.setattr(llama(), "llama_state_seq_set_data", lambda *_args: 0)
    reply = e.chat(
        [{"role": "user", "content": "hello"}],
        Sampling(temperature=1.0, max_tokens=700, seed=1),
        threading.Event(),
    )
    text = "".join(reply)
    assert "evaluating again" in caplog.text
    assert e.context.size > FIRST_CONTEXT
    assert reply.stats.generated_tokens > FIRST_CONTEXT - reply.stats.prompt_tokens
    # The cache holds the prompt and the reply (all but its last, sampled token), in order.
    cached = e.context.cached_tokens
    assert cached == e.prompt_cache.known_tokens[: len(cached)]
    assert len(cached) == reply.stats.prompt_tokens + reply.stats.generated_tokens - (
        reply.stats.stop_reason == "length"
    )
    assert text


def test_coalesce_joins_pieces_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.01, 0.02, 0.05, 0.06, 0.07])
    monkeypatch.setattr("app.engine.types.time.monotonic", lambda: next(clock))

    def pieces(fail: bool) -> Iterator[str]:
        yield from ["a", "b", "c", "d", "e"]
        if fail:
            raise EngineError("crashed")

    # "a" at once; "b", "c" wait and go with "d" (0.05 s after "a"); "e" waits for the end.
    assert list(coalesce(pieces(False), 0.04)) == ["a", "bcd", "e"]
    clock = iter([0.0, 0.01, 0.02, 0.05, 0.06])
    out = coalesce(pieces(True), 0.04)
    assert [next(out), next(out), next(out)] == ["a", "bcd", "e"]  # what waited, then the error
    with pytest.raises(EngineError, match="crashed"):
        next(out)


def test_interrupt_from_another_thread_ends_the_reply(engine: LlamaCppEngine) -> None:
    """The Engine contract's interrupt(): any thread may end the reply under way."""
    reply = engine.chat(
        [{"role": "user", "content": "go"}],
        Sampling(max_tokens=5000, temperature=0, repeat_penalty=1.0),
        threading.Event(),
    )
    for n, _ in enumerate(reply, start=1):
        if n == 5:
            other = threading.Thread(target=engine.interrupt)
            other.start()
            other.join()
        assert n <= 6  # ended at the next token
    assert reply.stats.stop_reason == "cancelled"
    # The next reply is not cancelled by it.
    again = engine.chat(
        [{"role": "user", "content": "a"}], Sampling(max_tokens=3), threading.Event()
    )
    list(again)
    assert again.stats.stop_reason != "cancelled"

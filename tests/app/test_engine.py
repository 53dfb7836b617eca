"""The llama.cpp engine on tiny generated models (fast) — streaming, stop, prefix reuse, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.engine.llama_cpp_engine import (
    FIRST_CONTEXT,
    PREPARE_LIMIT,
    REPLY_ROOM,
    LlamaCppEngine,
    _common_prefix,
    _TokenPicker,
    llama,
)
from app.engine.types import EngineError, LoadParams, coalesce
from app.settings import Sampling

PARAMS = LoadParams(context_length=512, threads=2)


@pytest.fixture
def engine(tiny_model: Path) -> Iterator[LlamaCppEngine]:
    e = LlamaCppEngine()
    e.load(str(tiny_model), PARAMS)
    yield e
    e.unload()


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
    msgs = [{"role": "user", "content": "the fire"}]
    one = "".join(engine.chat(msgs, Sampling(max_tokens=15, seed=42), threading.Event()))  # type: ignore[arg-type]
    two = "".join(engine.chat(msgs, Sampling(max_tokens=15, seed=42), threading.Event()))  # type: ignore[arg-type]
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


def test_follow_up_reuses_prefix(engine: LlamaCppEngine) -> None:
    history = [{"role": "user", "content": "hello world " * 10}]
    first = engine.chat(history, Sampling(max_tokens=10, seed=1), threading.Event())  # type: ignore[arg-type]
    text = "".join(first)
    history += [{"role": "assistant", "content": text}, {"role": "user", "content": "the fire"}]
    second = engine.chat(history, Sampling(max_tokens=5), threading.Event())  # type: ignore[arg-type]
    list(second)
    s = second.stats
    assert s.prompt_tokens > first.stats.prompt_tokens
    # Only the tail is evaluated: the template's glue after the last turn and the new message.
    assert s.prompt_tokens_evaluated < s.prompt_tokens - first.stats.prompt_tokens // 2


def test_follow_up_keeps_the_generated_tokens(engine: LlamaCppEngine) -> None:
    """A reply's text need not tokenize back to the tokens the model generated; they stay cached."""
    for seed in range(100):  # the first seed whose reply re-tokenizes to other ids (the case here)
        history = [{"role": "user", "content": "hello"}]
        first = engine.chat(history, Sampling(max_tokens=8, seed=seed), threading.Event())  # type: ignore[arg-type]
        text = "".join(first)
        history += [{"role": "assistant", "content": text}, {"role": "user", "content": "the fire"}]
        # the prompt, the reply but its last token (sampled, not yet decoded)
        in_cache = first.stats.prompt_tokens + first.stats.generated_tokens - 1
        generated = engine._cached[first.stats.prompt_tokens : in_cache]
        retokenized = engine._tokenize(engine.format_prompt(history).encode())  # type: ignore[arg-type]
        if "\ufffd" not in text and retokenized[first.stats.prompt_tokens : in_cache] != generated:
            break
    else:
        pytest.fail("no reply re-tokenized differently")

    second = engine.chat(history, Sampling(max_tokens=3), threading.Event())  # type: ignore[arg-type]
    list(second)
    # Evaluated: the reply's last token and the template's tail with the new message, nothing more.
    assert engine._cached[first.stats.prompt_tokens : in_cache] == generated
    tail = "<|im_end|>\n<|im_start|>user\nthe fire<|im_end|>\n<|im_start|>assistant\n"
    assert second.stats.prompt_tokens_evaluated == 1 + len(engine._tokenize(tail.encode(), False))
    assert second.stats.prompt_tokens == in_cache + second.stats.prompt_tokens_evaluated


def test_edited_earlier_message_reuses_only_what_precedes_it(engine: LlamaCppEngine) -> None:
    history = [{"role": "user", "content": "hello world " * 8}]
    first = engine.chat(history, Sampling(max_tokens=6, seed=3), threading.Event())  # type: ignore[arg-type]
    history += [{"role": "assistant", "content": "".join(first)}]
    edited = [{"role": "user", "content": "hello world " * 4 + "the fire"}, *history[1:]]
    edited.append({"role": "user", "content": "warm"})
    data = engine.format_prompt(edited).encode()  # type: ignore[arg-type]
    tokens, reused = engine._prompt_to_tokens(data)
    assert reused == 0  # no mark lies inside the shared "<|im_start|>user\nhello world ..." part
    assert tokens == engine._tokenize(data)
    first_prompt = engine._tokenize(engine.format_prompt(history[:1]).encode())  # type: ignore[arg-type]
    second = engine.chat(edited, Sampling(max_tokens=2), threading.Event())  # type: ignore[arg-type]
    list(second)
    # The cache kept the tokens the two prompts share and evaluated the rest.
    kept = second.stats.prompt_tokens - second.stats.prompt_tokens_evaluated
    assert kept == _common_prefix(first_prompt, tokens) > 10


def test_prepare_evaluates_the_next_turns_markup_ahead(engine: LlamaCppEngine) -> None:
    for seed in range(50):  # a reply of whole characters, so its text spells its tokens
        history = [{"role": "user", "content": "hello"}]
        first = engine.chat(history, Sampling(max_tokens=8, seed=seed), threading.Event())  # type: ignore[arg-type]
        text = "".join(first)
        if "\ufffd" not in text:
            break
    history.append({"role": "assistant", "content": text})
    in_cache = len(engine._cached)
    between = engine._tokenize(b"<|im_end|>\n<|im_start|>user\n", False)
    # The reply's last token (sampled, not yet decoded) and the markup up to the next message.
    assert engine.prepare(history) == 1 + len(between)  # type: ignore[arg-type]
    assert engine._cached[in_cache + 1 :] == between
    assert engine.prepare(history) == 0  # type: ignore[arg-type]

    history.append({"role": "user", "content": "the fire"})
    second = engine.chat(history, Sampling(max_tokens=4, seed=1), threading.Event())  # type: ignore[arg-type]
    prepared_reply = "".join(second)
    # All that was prepared is used: only the message and the assistant header are evaluated.
    prepared = in_cache + 1 + len(between)
    assert second.stats.prompt_tokens_evaluated == second.stats.prompt_tokens - prepared
    prompt = engine._cached[: second.stats.prompt_tokens]
    assert prompt[:prepared] == engine._known[:prepared]

    # The same prompt tokens and reply as without preparing.
    other = LlamaCppEngine()
    other.load(engine.loaded.path, PARAMS)  # type: ignore[union-attr]
    list(other.chat(history[:1], Sampling(max_tokens=8, seed=seed), threading.Event()))  # type: ignore[arg-type]
    again = other.chat(history, Sampling(max_tokens=4, seed=1), threading.Event())  # type: ignore[arg-type]
    assert "".join(again) == prepared_reply
    assert other._cached[: again.stats.prompt_tokens] == prompt
    other.unload()


def test_prepare_a_new_chat_evaluates_what_precedes_the_first_message(
    engine: LlamaCppEngine,
) -> None:
    system = [{"role": "system", "content": "Be brief."}]
    head = engine._tokenize(b"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert engine.prepare(system) == len(head)  # type: ignore[arg-type]
    assert engine._cached == head
    reply = engine.chat(
        [*system, {"role": "user", "content": "hi"}],  # type: ignore[list-item]
        Sampling(max_tokens=3),
        threading.Event(),
    )
    list(reply)
    assert reply.stats.prompt_tokens_evaluated == reply.stats.prompt_tokens - len(head)
    assert engine._cached[: reply.stats.prompt_tokens] == engine._tokenize(
        b"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        b"<|im_start|>assistant\n"
    )
    # Another conversation would push this one out of the cache: left alone, the user may
    # come back to it; one that starts like it has nothing to evaluate.
    cached = list(engine._cached)
    assert engine.prepare([{"role": "system", "content": "Be long."}]) == 0  # type: ignore[list-item]
    assert engine.prepare(system) == 0  # type: ignore[arg-type]
    assert engine._cached == cached


def test_prepare_may_replace_the_last_reply_when_history_writes_it_differently(
    engine: LlamaCppEngine,
) -> None:
    """Templates that leave out a reply's reasoning in history write it differently from how it
    was generated: what follows the last prompt gives way; earlier turns never do."""
    history = [{"role": "user", "content": "hello"}]
    first = engine.chat(history, Sampling(max_tokens=6, seed=1), threading.Event())  # type: ignore[arg-type]
    list(first)
    prompt = engine._cached[: first.stats.prompt_tokens]
    history.append({"role": "assistant", "content": "short"})
    assert engine.prepare(history) > 0  # type: ignore[arg-type]
    assert engine._cached[: len(prompt)] == prompt
    assert engine._cached == engine._tokenize(
        b"<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nshort<|im_end|>\n"
        b"<|im_start|>user\n"
    )


def test_prepare_stops_when_asked_and_leaves_a_usable_cache(engine: LlamaCppEngine) -> None:
    system = [{"role": "system", "content": "hello world " * 12}]
    full = engine._tokenize(engine.format_prompt(system).encode())  # type: ignore[arg-type]
    assert len(full) > 3 * 16
    engine._n_batch = 16  # several batches: those done before the stop stay

    def stop() -> bool:  # asked before each batch and during its evaluation
        return len(engine._cached) >= 32

    assert engine.prepare(system, stop) == 32  # type: ignore[arg-type]
    assert engine._cached == full[:32]
    reply = engine.chat(
        [*system, {"role": "user", "content": "hi"}],  # type: ignore[list-item]
        Sampling(max_tokens=3),
        threading.Event(),
    )
    list(reply)
    assert reply.stats.generated_tokens >= 1
    assert reply.stats.prompt_tokens_evaluated == reply.stats.prompt_tokens - 32


def test_prepare_skips_what_is_too_much_or_would_not_fit(
    engine: LlamaCppEngine, engine_2k: LlamaCppEngine
) -> None:
    too_long = [{"role": "system", "content": "hello world " * 40}]
    assert len(engine._tokenize(engine.format_prompt(too_long).encode())) > 512 * 3 // 4  # type: ignore[arg-type]
    assert engine.prepare(too_long) == 0  # type: ignore[arg-type]
    assert engine._cached == []
    too_much = [{"role": "system", "content": "hello world " * 60}]
    n = len(engine_2k._tokenize(engine_2k.format_prompt(too_much).encode()))  # type: ignore[arg-type]
    assert PREPARE_LIMIT < n < 2048 * 3 // 4
    assert engine_2k.prepare(too_much) == 0  # type: ignore[arg-type]
    assert engine_2k._cached == []


def _next_token_logits(e: LlamaCppEngine) -> list[float]:
    lib = llama()
    return list(lib.llama_get_logits_ith(e._ctx, -1)[: lib.llama_vocab_n_tokens(e._vocab)])


def test_prepared_draft_lets_the_reply_start_without_evaluating(
    engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = [{"role": "user", "content": "hello"}]
    first = engine.chat(history, Sampling(max_tokens=6, seed=1), threading.Event())  # type: ignore[arg-type]
    history.append({"role": "assistant", "content": "".join(first)})
    in_cache = list(engine._cached)
    draft = [*history, {"role": "user", "content": "the fire"}]
    evaluated = engine.prepare(draft)  # type: ignore[arg-type]
    prompt = list(engine._cached)
    assert evaluated == len(prompt) - _common_prefix(in_cache, prompt) > 0
    assert engine._cached[-2:] == engine._tokenize(b"assistant\n", False)[-2:]
    logits = _next_token_logits(engine)

    greedy = Sampling(temperature=0, max_tokens=3)
    tokenized: list[bytes] = []
    tokenize = engine._tokenize
    monkeypatch.setattr(engine, "_tokenize", lambda d, **k: tokenized.append(d) or tokenize(d, **k))
    rendered: list[object] = []
    formatter = engine._formatter
    monkeypatch.setattr(engine, "_formatter", lambda **k: rendered.append(k) or formatter(**k))
    reply = engine.chat(draft, greedy, threading.Event())  # type: ignore[arg-type]
    list(reply)
    # Nor formatting or tokenizing: the prepared prompt's text and tokens were kept.
    assert rendered == []
    assert tokenized == []
    assert reply.stats.prompt_tokens == len(prompt)
    assert reply.stats.prompt_tokens_evaluated == 0
    assert engine._cached[: len(prompt)] == prompt
    assert engine._known[len(prompt)] == max(range(len(logits)), key=logits.__getitem__)
    # Those logits are the ones evaluating the same prompt afresh gives.
    other = LlamaCppEngine()
    other.load(engine.loaded.path, PARAMS)  # type: ignore[union-attr]
    assert other._evaluate(prompt, lambda: False)
    fresh = _next_token_logits(other)
    other.unload()
    assert max(abs(a - b) for a, b in zip(fresh, logits, strict=True)) < 1e-3

    # Sent again (regenerate): the logits are the reply's now, so the last token is evaluated.
    again = engine.chat(draft, greedy, threading.Event())  # type: ignore[arg-type]
    list(again)
    assert again.stats.prompt_tokens_evaluated == 1
    assert engine._known[len(prompt)] == max(range(len(logits)), key=logits.__getitem__)


def test_typing_on_evaluates_only_from_where_the_draft_changed(engine: LlamaCppEngine) -> None:
    typed = [{"role": "user", "content": "the fire"}]
    engine.prepare(typed)  # type: ignore[arg-type]
    before = list(engine._cached)
    more = [{"role": "user", "content": "the fire burns"}]
    evaluated = engine.prepare(more)  # type: ignore[arg-type]
    assert engine._cached == engine._tokenize(engine.format_prompt(more).encode())  # type: ignore[arg-type]
    assert evaluated == len(engine._cached) - _common_prefix(before, engine._cached)
    tail = engine._tokenize(b" burns<|im_end|>\n<|im_start|>assistant\n", False)
    assert evaluated <= len(tail) + 1
    # Sent with a word more than was prepared: the same again, from where they differ.
    sent = [{"role": "user", "content": "the fire burns bright"}]
    reply = engine.chat(sent, Sampling(max_tokens=2), threading.Event())  # type: ignore[arg-type]
    list(reply)
    shared = _common_prefix(engine._cached, engine._tokenize(engine.format_prompt(more).encode()))  # type: ignore[arg-type]
    assert reply.stats.prompt_tokens_evaluated == reply.stats.prompt_tokens - shared


def test_a_draft_is_prepared_in_any_conversation_if_it_fits(
    engine: LlamaCppEngine, engine_2k: LlamaCppEngine
) -> None:
    """Typing in a conversation says where the next message goes: its prompt may replace
    another conversation in the cache, and is not held to PREPARE_LIMIT (a pasted text)."""
    list(
        engine.chat(
            [{"role": "user", "content": "hello"}], Sampling(max_tokens=4), threading.Event()
        )
    )  # type: ignore[list-item]
    elsewhere = [{"role": "user", "content": "another conversation"}]
    assert engine.prepare(elsewhere) > 0  # type: ignore[arg-type]
    assert engine._cached == engine._tokenize(engine.format_prompt(elsewhere).encode())  # type: ignore[arg-type]
    # Not when the prompt might leave out early turns to make room for the reply.
    cached = list(engine._cached)
    too_long = [{"role": "user", "content": "hello world " * 40}]
    assert engine.prepare(too_long) == 0  # type: ignore[arg-type]
    assert engine._cached == cached
    pasted = [{"role": "user", "content": "hello world " * 60}]
    n = len(engine_2k._tokenize(engine_2k.format_prompt(pasted).encode()))  # type: ignore[arg-type]
    assert PREPARE_LIMIT < n < 2048 * 3 // 4
    assert engine_2k.prepare(pasted) == n  # type: ignore[arg-type]


def test_long_conversation_drops_oldest_turns(engine: LlamaCppEngine) -> None:
    history = []
    for i in range(30):
        history += [
            {"role": "user", "content": f"hello world {i} " * 4},
            {"role": "assistant", "content": "the fire " * 4},
        ]
    history.append({"role": "user", "content": "warm"})
    reply = engine.chat(history, Sampling(max_tokens=5), threading.Event())  # type: ignore[arg-type]
    list(reply)
    assert reply.stats.messages_dropped > 0
    assert reply.stats.prompt_tokens <= 512


def test_single_message_too_long(engine: LlamaCppEngine) -> None:
    reply = engine.chat(
        [{"role": "user", "content": "hello world " * 600}], Sampling(), threading.Event()
    )
    with pytest.raises(EngineError, match="too long"):
        list(reply)


def test_missing_template_falls_back_and_says_so(tiny_model_no_template: Path) -> None:
    e = LlamaCppEngine()
    info = e.load(str(tiny_model_no_template), PARAMS)
    try:
        assert info.template_source == "fallback"
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
    import app.engine.llama_cpp_engine as module

    calls: list[int] = []
    monkeypatch.setattr(module, "_release_freed_memory", lambda: calls.append(1))
    engine.unload()
    engine.unload()  # nothing loaded: nothing freed
    assert calls == [1]
    monkeypatch.undo()
    module._release_freed_memory()  # runs on this platform without raising


def _reference_chain(lib: Any, engine: LlamaCppEngine, s: Sampling) -> Any:
    """llama.cpp's own sampler chain for these settings, penalties first."""
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    add = lib.llama_sampler_chain_add
    if s.repeat_penalty != 1.0:
        n_vocab = lib.llama_vocab_n_tokens(engine._vocab)
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
    prompt = engine._tokenize(
        engine.format_prompt([{"role": "user", "content": "hello world the fire"}]).encode()
    )
    one = (lib.llama_token * 1)()

    def generate(pick: Callable[[], int]) -> list[int]:
        engine._trim_cache(0)
        assert engine._evaluate(prompt, lambda: False)
        tokens = []
        for _ in range(80):
            tokens.append(pick())
            one[0] = tokens[-1]
            assert lib.llama_decode(engine._ctx, lib.llama_batch_get_one(one, 1)) == 0
        return tokens

    picker = _TokenPicker(lib, engine._vocab, sampling)
    ours = generate(lambda: picker.pick(engine._ctx))
    picker.close()
    chain = _reference_chain(lib, engine, sampling)
    reference = generate(lambda: int(lib.llama_sampler_sample(chain, engine._ctx, -1)))
    lib.llama_sampler_free(chain)
    assert ours == reference
    if sampling.repeat_penalty != 1.0:  # the penalty changed the reply, so it was compared too
        plain = _TokenPicker(lib, engine._vocab, replace(sampling, repeat_penalty=1))
        assert generate(lambda: plain.pick(engine._ctx)) != ours
        plain.close()


@pytest.fixture
def engine_2k(make_model: Callable[..., Path]) -> Iterator[LlamaCppEngine]:
    e = LlamaCppEngine()
    e.load(str(make_model("tiny-2k.gguf", n_ctx=2048)), LoadParams(context_length=2048, threads=2))
    yield e
    e.unload()


def test_context_starts_small_and_grows_keeping_the_cache(engine_2k: LlamaCppEngine) -> None:
    e = engine_2k
    assert e.loaded is not None
    assert e.loaded.context_length == 2048  # what the user asked for, checked to fit at load
    assert e._ctx_size == FIRST_CONTEXT == 256
    history = [{"role": "user", "content": " the" * 100}]  # ~420 tokens, + REPLY_ROOM
    first = e.chat(history, Sampling(max_tokens=4, seed=1), threading.Event())  # type: ignore[arg-type]
    history.append({"role": "assistant", "content": "".join(first)})
    assert len(e._cached) + REPLY_ROOM <= 512
    assert e._ctx_size == 512  # doubled to fit the prompt and the reply's room
    history.append({"role": "user", "content": " the" * 120})  # past 512: grows again
    second = e.chat(history, Sampling(max_tokens=4, seed=1), threading.Event())  # type: ignore[arg-type]
    list(second)
    assert e._ctx_size == 1024
    # The earlier turns came along in the KV cache: only the new message was evaluated.
    assert second.stats.prompt_tokens_evaluated < second.stats.prompt_tokens - 400


def test_context_grows_while_preparing_not_before_the_first_token(
    engine_2k: LlamaCppEngine,
) -> None:
    e = engine_2k
    words = 1
    while (
        len(e._tokenize(e.format_prompt([{"role": "user", "content": " the" * words}]).encode()))
        < 180
    ):
        words += 1
    history = [{"role": "user", "content": " the" * words}]
    first = e.chat(history, Sampling(max_tokens=4, seed=1), threading.Event())  # type: ignore[arg-type]
    history.append({"role": "assistant", "content": "".join(first)})
    assert e._ctx_size == FIRST_CONTEXT  # the prompt and its reply fitted
    e.prepare(history)  # type: ignore[arg-type]
    assert e._ctx_size == 2 * FIRST_CONTEXT  # room for the next message, made ahead
    history.append({"role": "user", "content": " fire" * 20})
    second = e.chat(history, Sampling(max_tokens=2, seed=1), threading.Event())  # type: ignore[arg-type]
    list(second)
    assert second.stats.prompt_tokens > FIRST_CONTEXT - REPLY_ROOM  # it would have had to grow
    assert e._ctx_size == 2 * FIRST_CONTEXT


def test_reply_continues_unchanged_when_the_context_grows_mid_reply(
    engine_2k: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampling = Sampling(temperature=1.0, max_tokens=700, seed=1)
    e = engine_2k
    grown = "".join(e.chat([{"role": "user", "content": "hello"}], sampling, threading.Event()))
    assert len(e._cached) > 2 * FIRST_CONTEXT  # the reply ran past the first context, twice
    assert e._ctx_size == 4 * FIRST_CONTEXT

    assert e.loaded is not None
    path = e.loaded.path
    e.unload()
    monkeypatch.setattr("app.engine.llama_cpp_engine.FIRST_CONTEXT", 4096)  # no growing
    e.load(path, LoadParams(context_length=2048, threads=2))
    assert e._ctx_size == 2048
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
    assert e._ctx_size > FIRST_CONTEXT
    assert reply.stats.generated_tokens > FIRST_CONTEXT - reply.stats.prompt_tokens
    # The cache holds the prompt and the reply (all but its last, sampled token), in order.
    assert e._cached == e._known[: len(e._cached)]
    assert len(e._cached) == reply.stats.prompt_tokens + reply.stats.generated_tokens - (
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

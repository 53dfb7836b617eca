"""The llama.cpp engine reusing its KV cache: across turns, and prepared ahead while the user types.

A follow-up turn must evaluate only what is new; what prepare() evaluated ahead must be exactly
what the next chat needs. Tiny generated models (fast).
"""

from __future__ import annotations

import threading

import pytest

from app.engine.llama_cpp_engine import PREPARE_LIMIT, LlamaCppEngine, llama
from app.engine.prompt_cache import common_prefix
from app.engine.types import ChatMessage, LoadParams
from app.settings import Sampling

PARAMS = LoadParams(context_length=512, threads=2)


def test_follow_up_reuses_prefix(engine: LlamaCppEngine) -> None:
    history: list[ChatMessage] = [{"role": "user", "content": "hello world " * 10}]
    first = engine.chat(history, Sampling(max_tokens=10, seed=1), threading.Event())
    text = "".join(first)
    history += [{"role": "assistant", "content": text}, {"role": "user", "content": "the fire"}]
    second = engine.chat(history, Sampling(max_tokens=5), threading.Event())
    list(second)
    s = second.stats
    assert s.prompt_tokens > first.stats.prompt_tokens
    # Only the tail is evaluated: the template's glue after the last turn and the new message.
    assert s.prompt_tokens_evaluated < s.prompt_tokens - first.stats.prompt_tokens // 2


def test_follow_up_keeps_the_generated_tokens(engine: LlamaCppEngine) -> None:
    """A reply's text need not tokenize back to the tokens the model generated; they stay cached."""
    for seed in range(100):  # the first seed whose reply re-tokenizes to other ids (the case here)
        history: list[ChatMessage] = [{"role": "user", "content": "hello"}]
        first = engine.chat(history, Sampling(max_tokens=8, seed=seed), threading.Event())
        text = "".join(first)
        history += [{"role": "assistant", "content": text}, {"role": "user", "content": "the fire"}]
        # the prompt, the reply but its last token (sampled, not yet decoded)
        in_cache = first.stats.prompt_tokens + first.stats.generated_tokens - 1
        generated = engine.context.cached_tokens[first.stats.prompt_tokens : in_cache]
        retokenized = engine.vocab.tokenize(engine.format_prompt(history).encode())
        if "\ufffd" not in text and retokenized[first.stats.prompt_tokens : in_cache] != generated:
            break
    else:
        pytest.fail("no reply re-tokenized differently")

    second = engine.chat(history, Sampling(max_tokens=3), threading.Event())
    list(second)
    # Evaluated: the reply's last token and the template's tail with the new message, nothing more.
    assert engine.context.cached_tokens[first.stats.prompt_tokens : in_cache] == generated
    tail = "<|im_end|>\n<|im_start|>user\nthe fire<|im_end|>\n<|im_start|>assistant\n"
    assert second.stats.prompt_tokens_evaluated == 1 + len(
        engine.vocab.tokenize(tail.encode(), False)
    )
    assert second.stats.prompt_tokens == in_cache + second.stats.prompt_tokens_evaluated


def test_edited_earlier_message_reuses_only_what_precedes_it(engine: LlamaCppEngine) -> None:
    history: list[ChatMessage] = [{"role": "user", "content": "hello world " * 8}]
    first = engine.chat(history, Sampling(max_tokens=6, seed=3), threading.Event())
    history += [{"role": "assistant", "content": "".join(first)}]
    edited: list[ChatMessage] = [
        {"role": "user", "content": "hello world " * 4 + "the fire"},
        *history[1:],
    ]
    edited.append({"role": "user", "content": "warm"})
    data = engine.format_prompt(edited).encode()
    tokens, reused = engine.prompt_cache.tokens_for(data)
    assert reused == 0  # no mark lies inside the shared "<|im_start|>user\nhello world ..." part
    assert tokens == engine.vocab.tokenize(data)
    first_prompt = engine.vocab.tokenize(engine.format_prompt(history[:1]).encode())
    second = engine.chat(edited, Sampling(max_tokens=2), threading.Event())
    list(second)
    # The cache kept the tokens the two prompts share and evaluated the rest.
    kept = second.stats.prompt_tokens - second.stats.prompt_tokens_evaluated
    assert kept == common_prefix(first_prompt, tokens) > 10


def test_prepare_evaluates_the_next_turns_markup_ahead(engine: LlamaCppEngine) -> None:
    for seed in range(50):  # a reply of whole characters, so its text spells its tokens
        history: list[ChatMessage] = [{"role": "user", "content": "hello"}]
        first = engine.chat(history, Sampling(max_tokens=8, seed=seed), threading.Event())
        text = "".join(first)
        if "\ufffd" not in text:
            break
    history.append({"role": "assistant", "content": text})
    in_cache = len(engine.context.cached_tokens)
    between = engine.vocab.tokenize(b"<|im_end|>\n<|im_start|>user\n", False)
    # The reply's last token (sampled, not yet decoded) and the markup up to the next message.
    assert engine.prepare(history) == 1 + len(between)
    assert engine.context.cached_tokens[in_cache + 1 :] == between
    assert engine.prepare(history) == 0

    history.append({"role": "user", "content": "the fire"})
    second = engine.chat(history, Sampling(max_tokens=4, seed=1), threading.Event())
    prepared_reply = "".join(second)
    # All that was prepared is used: only the message and the assistant header are evaluated.
    prepared = in_cache + 1 + len(between)
    assert second.stats.prompt_tokens_evaluated == second.stats.prompt_tokens - prepared
    prompt = engine.context.cached_tokens[: second.stats.prompt_tokens]
    assert prompt[:prepared] == engine.prompt_cache.known_tokens[:prepared]

    # The same prompt tokens and reply as without preparing.
    other = LlamaCppEngine()
    other.load(engine.loaded.path, PARAMS)  # type: ignore[union-attr]
    list(other.chat(history[:1], Sampling(max_tokens=8, seed=seed), threading.Event()))
    again = other.chat(history, Sampling(max_tokens=4, seed=1), threading.Event())
    assert "".join(again) == prepared_reply
    assert other.context.cached_tokens[: again.stats.prompt_tokens] == prompt
    other.unload()


def test_prepare_a_new_chat_evaluates_what_precedes_the_first_message(
    engine: LlamaCppEngine,
) -> None:
    system: list[ChatMessage] = [{"role": "system", "content": "Be brief."}]
    head = engine.vocab.tokenize(b"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert engine.prepare(system) == len(head)
    assert engine.context.cached_tokens == head
    reply = engine.chat(
        [*system, {"role": "user", "content": "hi"}],
        Sampling(max_tokens=3),
        threading.Event(),
    )
    list(reply)
    assert reply.stats.prompt_tokens_evaluated == reply.stats.prompt_tokens - len(head)
    assert engine.context.cached_tokens[: reply.stats.prompt_tokens] == engine.vocab.tokenize(
        b"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        b"<|im_start|>assistant\n"
    )
    # Another conversation would push this one out of the cache: left alone, the user may
    # come back to it; one that starts like it has nothing to evaluate.
    cached = list(engine.context.cached_tokens)
    assert engine.prepare([{"role": "system", "content": "Be long."}]) == 0
    assert engine.prepare(system) == 0
    assert engine.context.cached_tokens == cached


def test_prepare_may_replace_the_last_reply_when_history_writes_it_differently(
    engine: LlamaCppEngine,
) -> None:
    """Templates that leave out a reply's reasoning in history write it differently from how it
    was generated: what follows the last prompt gives way; earlier turns never do."""
    history: list[ChatMessage] = [{"role": "user", "content": "hello"}]
    first = engine.chat(history, Sampling(max_tokens=6, seed=1), threading.Event())
    list(first)
    prompt = engine.context.cached_tokens[: first.stats.prompt_tokens]
    history.append({"role": "assistant", "content": "short"})
    assert engine.prepare(history) > 0
    assert engine.context.cached_tokens[: len(prompt)] == prompt
    assert engine.context.cached_tokens == engine.vocab.tokenize(
        b"<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nshort<|im_end|>\n"
        b"<|im_start|>user\n"
    )


def test_prepare_stops_when_asked_and_leaves_a_usable_cache(engine: LlamaCppEngine) -> None:
    system: list[ChatMessage] = [{"role": "system", "content": "hello world " * 12}]
    full = engine.vocab.tokenize(engine.format_prompt(system).encode())
    assert len(full) > 3 * 16
    engine.context.batch_size = 16  # several batches: those done before the stop stay

    def stop() -> bool:  # asked before each batch and during its evaluation
        return len(engine.context.cached_tokens) >= 32

    assert engine.prepare(system, stop) == 32
    assert engine.context.cached_tokens == full[:32]
    reply = engine.chat(
        [*system, {"role": "user", "content": "hi"}],
        Sampling(max_tokens=3),
        threading.Event(),
    )
    list(reply)
    assert reply.stats.generated_tokens >= 1
    assert reply.stats.prompt_tokens_evaluated == reply.stats.prompt_tokens - 32


def test_prepare_skips_what_is_too_much_or_would_not_fit(
    engine: LlamaCppEngine, engine_2k: LlamaCppEngine
) -> None:
    too_long: list[ChatMessage] = [{"role": "system", "content": "hello world " * 40}]
    assert len(engine.vocab.tokenize(engine.format_prompt(too_long).encode())) > 512 * 3 // 4
    assert engine.prepare(too_long) == 0
    assert engine.context.cached_tokens == []
    too_much: list[ChatMessage] = [{"role": "system", "content": "hello world " * 60}]
    n = len(engine_2k.vocab.tokenize(engine_2k.format_prompt(too_much).encode()))
    assert PREPARE_LIMIT < n < 2048 * 3 // 4
    assert engine_2k.prepare(too_much) == 0
    assert engine_2k.context.cached_tokens == []


def _next_token_logits(e: LlamaCppEngine) -> list[float]:
    lib = llama()
    return list(
        lib.llama_get_logits_ith(e.context.handle, -1)[: lib.llama_vocab_n_tokens(e.vocab.handle)]
    )


def test_prepared_draft_lets_the_reply_start_without_evaluating(
    engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    history: list[ChatMessage] = [{"role": "user", "content": "hello"}]
    first = engine.chat(history, Sampling(max_tokens=6, seed=1), threading.Event())
    history.append({"role": "assistant", "content": "".join(first)})
    in_cache = list(engine.context.cached_tokens)
    draft: list[ChatMessage] = [*history, {"role": "user", "content": "the fire"}]
    evaluated = engine.prepare(draft)
    prompt = list(engine.context.cached_tokens)
    assert evaluated == len(prompt) - common_prefix(in_cache, prompt) > 0
    assert engine.context.cached_tokens[-2:] == engine.vocab.tokenize(b"assistant\n", False)[-2:]
    logits = _next_token_logits(engine)

    greedy = Sampling(temperature=0, max_tokens=3)
    tokenized: list[bytes] = []
    tokenize = engine.vocab.tokenize

    def counted_tokenize(data: bytes, add_bos: bool = True) -> list[int]:
        tokenized.append(data)
        return tokenize(data, add_bos)

    monkeypatch.setattr(engine.vocab, "tokenize", counted_tokenize)
    rendered: list[object] = []
    render = engine.template.render

    def counted_render(messages: list[ChatMessage]) -> str:
        rendered.append(messages)
        return render(messages)

    monkeypatch.setattr(engine.template, "render", counted_render)
    reply = engine.chat(draft, greedy, threading.Event())
    list(reply)
    # Nor formatting or tokenizing: the prepared prompt's text and tokens were kept.
    assert rendered == []
    assert tokenized == []
    assert reply.stats.prompt_tokens == len(prompt)
    assert reply.stats.prompt_tokens_evaluated == 0
    assert engine.context.cached_tokens[: len(prompt)] == prompt
    assert engine.prompt_cache.known_tokens[len(prompt)] == max(
        range(len(logits)), key=logits.__getitem__
    )
    # Those logits are the ones evaluating the same prompt afresh gives.
    other = LlamaCppEngine()
    other.load(engine.loaded.path, PARAMS)  # type: ignore[union-attr]
    assert other.context.evaluate(prompt, lambda: False)
    fresh = _next_token_logits(other)
    other.unload()
    assert max(abs(a - b) for a, b in zip(fresh, logits, strict=True)) < 1e-3

    # Sent again (regenerate): the logits are the reply's now, so the last token is evaluated.
    again = engine.chat(draft, greedy, threading.Event())
    list(again)
    assert again.stats.prompt_tokens_evaluated == 1
    assert engine.prompt_cache.known_tokens[len(prompt)] == max(
        range(len(logits)), key=logits.__getitem__
    )


def test_typing_on_evaluates_only_from_where_the_draft_changed(engine: LlamaCppEngine) -> None:
    typed: list[ChatMessage] = [{"role": "user", "content": "the fire"}]
    engine.prepare(typed)
    before = list(engine.context.cached_tokens)
    more: list[ChatMessage] = [{"role": "user", "content": "the fire burns"}]
    evaluated = engine.prepare(more)
    assert engine.context.cached_tokens == engine.vocab.tokenize(
        engine.format_prompt(more).encode()
    )
    assert evaluated == len(engine.context.cached_tokens) - common_prefix(
        before, engine.context.cached_tokens
    )
    tail = engine.vocab.tokenize(b" burns<|im_end|>\n<|im_start|>assistant\n", False)
    assert evaluated <= len(tail) + 1
    # Sent with a word more than was prepared: the same again, from where they differ.
    sent: list[ChatMessage] = [{"role": "user", "content": "the fire burns bright"}]
    reply = engine.chat(sent, Sampling(max_tokens=2), threading.Event())
    list(reply)
    shared = common_prefix(
        engine.context.cached_tokens, engine.vocab.tokenize(engine.format_prompt(more).encode())
    )
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
    )
    elsewhere: list[ChatMessage] = [{"role": "user", "content": "another conversation"}]
    assert engine.prepare(elsewhere) > 0
    assert engine.context.cached_tokens == engine.vocab.tokenize(
        engine.format_prompt(elsewhere).encode()
    )
    # Not when the prompt might leave out early turns to make room for the reply.
    cached = list(engine.context.cached_tokens)
    too_long: list[ChatMessage] = [{"role": "user", "content": "hello world " * 40}]
    assert engine.prepare(too_long) == 0
    assert engine.context.cached_tokens == cached
    pasted: list[ChatMessage] = [{"role": "user", "content": "hello world " * 60}]
    n = len(engine_2k.vocab.tokenize(engine_2k.format_prompt(pasted).encode()))
    assert PREPARE_LIMIT < n < 2048 * 3 // 4
    assert engine_2k.prepare(pasted) == n

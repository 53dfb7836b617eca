"""Thinking on/off and a thinking budget, through the llama.cpp engine on tiny models with real
reasoning templates (Qwen 3's switch, QwQ's header that opens the thinking) and a scripted
model: what it writes is chosen by the test, what the engine adds is the behaviour tested."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.chats.chat_settings import ChatSettings
from app.chats.turn import request_reply
from app.engine.llama_cpp_engine import LlamaCppEngine
from app.engine.thinking import ThinkingBudget, opens_thinking
from app.engine.types import ChatMessage, LoadParams
from app.settings import Sampling
from tests.gguf_factory import write_tiny_model
from tests.scripted_model import eos_of, script_model, tokens_of

TEMPLATES = Path(__file__).parent.parent / "data" / "templates"
HELLO: list[ChatMessage] = [{"role": "user", "content": "hello"}]
THINK_TOKENS = ("<think>", "</think>")


def _engine(path: Path, template: str) -> Iterator[LlamaCppEngine]:
    chat_template = (TEMPLATES / f"{template}.jinja").read_text(encoding="utf-8")
    write_tiny_model(path, chat_template=chat_template, user_tokens=THINK_TOKENS)
    engine = LlamaCppEngine()
    engine.load(str(path), LoadParams(context_length=512, threads=2))
    yield engine
    engine.unload()


@pytest.fixture
def qwen3(tmp_path: Path) -> Iterator[LlamaCppEngine]:
    """Qwen 3's template: the model opens <think> itself; ``enable_thinking`` off closes an
    empty block in the prompt."""
    yield from _engine(tmp_path / "qwen3-style.gguf", "Qwen-Qwen3-0.6B")


@pytest.fixture
def qwq(tmp_path: Path) -> Iterator[LlamaCppEngine]:
    """QwQ's template: the reply's header ends in <think>, the reply starts inside it (with
    thinking on; off, the header closes it at once)."""
    yield from _engine(tmp_path / "qwq-style.gguf", "Qwen-QwQ-32B")


def _scripted(
    engine: LlamaCppEngine, script: list[int], sampling: Sampling, mp: pytest.MonkeyPatch
) -> tuple[str, Any]:
    script_model(mp, [*script, eos_of(engine)])
    reply = engine.chat(HELLO, sampling, threading.Event())
    return "".join(reply), reply.stats


def _prompt_text(engine: LlamaCppEngine) -> str:
    cache = engine.prompt_cache
    sent = cache.known_tokens[: cache.prompt_length]
    # This SentencePiece vocabulary spells a space after each control token: left out here.
    return b"".join(engine.vocab.spelling(t) for t in sent).decode().replace(" ", "")


def test_the_loaded_model_says_whether_its_template_has_a_thinking_switch(
    qwen3: LlamaCppEngine, engine: LlamaCppEngine
) -> None:
    assert qwen3.loaded is not None
    assert qwen3.loaded.thinking_switch
    assert engine.loaded is not None
    assert not engine.loaded.thinking_switch


def test_thinking_off_renders_the_template_with_enable_thinking_false(
    qwen3: LlamaCppEngine,
) -> None:
    off = ChatSettings(thinking=False).sampling(Sampling(max_tokens=2))
    assert not off.enable_thinking
    list(qwen3.chat(HELLO, off, threading.Event()))
    assert _prompt_text(qwen3).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    list(qwen3.chat(HELLO, ChatSettings().sampling(Sampling(max_tokens=2)), threading.Event()))
    assert _prompt_text(qwen3).endswith("<|im_start|>assistant\n")


def test_a_budget_closes_the_thinking_and_the_answer_follows(
    qwen3: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    think, end = (qwen3.vocab.single_token(t) for t in THINK_TOKENS)
    w = tokens_of(qwen3, " hello", " world", " fire", " warm", " the", " a")
    sampling = Sampling(max_tokens=40, thinking_budget=3)
    text, stats = _scripted(qwen3, [think, *w], sampling, monkeypatch)
    # Three tokens of thought, then the engine's "</think>\n"; the model's next tokens answer.
    assert text == "<think> hello world fire</think>\n warm the a"
    assert stats.stop_reason == "eos"
    known = list(qwen3.prompt_cache.known_tokens)
    assert end in known  # the model read the closing marker before it answered
    assert known.count(end) == 1


def test_no_budget_or_a_model_that_stops_in_time_gets_nothing_added(
    qwen3: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    think, end = (qwen3.vocab.single_token(t) for t in THINK_TOKENS)
    w = tokens_of(qwen3, " hello", " world", " fire", " warm")
    text, _ = _scripted(qwen3, [think, *w], Sampling(max_tokens=40), monkeypatch)
    assert text == "<think> hello world fire warm"
    text, _ = _scripted(qwen3, [think, w[0], end, *w[1:]], Sampling(thinking_budget=2), monkeypatch)
    assert text == "<think> hello</think> world fire warm"


def test_a_budget_ignores_a_think_tag_in_the_middle_of_an_answer(
    qwen3: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    think = qwen3.vocab.single_token("<think>")
    w = tokens_of(qwen3, " hello", " world", " fire", " warm")
    text, _ = _scripted(qwen3, [w[0], think, *w[1:]], Sampling(thinking_budget=1), monkeypatch)
    assert "</think>" not in text


def test_a_template_that_opens_the_thinking_counts_from_the_first_token(
    qwq: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = tokens_of(qwq, " hello", " world", " fire")
    text, _ = _scripted(qwq, w, Sampling(thinking_budget=2), monkeypatch)
    assert text == " hello world</think>\n fire"
    text, _ = _scripted(qwq, w, Sampling(thinking_budget=0), monkeypatch)
    assert text.startswith("</think>\n hello")  # no thinking at all


def test_the_budget_follows_the_text_of_a_reply() -> None:
    budget = ThinkingBudget(2, inside=False)
    for piece in (b"\n", b"<thi", b"nk>", b" a"):
        budget.feed(piece)
    assert budget.inside
    assert not budget.due()
    budget.feed(b" b")
    assert budget.due()
    plain = ThinkingBudget(2, inside=False)
    plain.feed(b"Sure")
    assert not plain.watching  # an answer without thinking: nothing more to follow
    closed = ThinkingBudget(5, inside=True)
    for piece in (b" x", b"</thi", b"nk>"):
        closed.feed(piece)
    assert not closed.watching
    assert not closed.due()
    assert opens_thinking("<|im_start|>assistant\n<think>\n")
    assert not opens_thinking("<think>\n\n</think>\n\n")


def test_the_prompt_shown_and_continued_follows_the_thinking_switch(
    qwen3: LlamaCppEngine,
) -> None:
    """View prompt and Continue render the conversation as its replies were rendered: with
    thinking off, Qwen 3's empty thinking block is in the prompt."""
    assert qwen3.format_prompt(HELLO, enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert qwen3.format_prompt(HELLO).endswith("<|im_start|>assistant\n")
    off = ChatSettings(thinking=False).sampling(Sampling(max_tokens=2))
    list(request_reply(qwen3, HELLO, "Hi", off, threading.Event()))
    assert _prompt_text(qwen3).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\nHi")

"""A chat template is code from the internet: one that never finishes is stopped with a plain
message, in the engine process and in this one, and the engine goes on working."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app.engine.llama_cpp_engine import LlamaCppEngine
from app.engine.process import ProcessEngine
from app.engine.templates import RENDER_SECONDS
from app.engine.types import EngineError, LoadParams
from app.settings import Sampling

FOREVER = (
    "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
    "{% endfor %}{% endfor %}{% endfor %}{{ messages[0]['content'] }}"
)
HELLO = [{"role": "user", "content": "hello"}]


def test_a_template_that_never_finishes_is_stopped_in_this_process(tiny_model: Path) -> None:
    engine = LlamaCppEngine()
    engine.load(str(tiny_model), LoadParams(context_length=512, chat_template_override=FOREVER))
    started = time.monotonic()
    with pytest.raises(EngineError, match="did not finish within"):
        engine.format_prompt(HELLO)  # type: ignore[arg-type]
    assert time.monotonic() - started < RENDER_SECONDS + 2
    engine.unload()
    engine.load(str(tiny_model), LoadParams(context_length=512))
    assert "hello" in engine.format_prompt(HELLO)  # type: ignore[arg-type]
    engine.unload()


def test_a_template_that_never_finishes_fails_the_reply_not_the_engine(tiny_model: Path) -> None:
    engine = ProcessEngine()
    try:
        engine.load(str(tiny_model), LoadParams(context_length=512, chat_template_override=FOREVER))
        started = time.monotonic()
        with pytest.raises(EngineError, match="did not finish within"):
            list(engine.chat(HELLO, Sampling(max_tokens=4), threading.Event()))  # type: ignore[arg-type]
        assert time.monotonic() - started < RENDER_SECONDS + 5
        engine.load(str(tiny_model), LoadParams(context_length=512))  # the same process goes on
        assert list(engine.chat(HELLO, Sampling(max_tokens=4), threading.Event()))  # type: ignore[arg-type]
    finally:
        engine.close()


def test_a_template_that_renders_nothing_is_a_plain_error_not_a_crash(tiny_model: Path) -> None:
    """An empty prompt reached llama_decode with no tokens, which aborts the process."""
    engine = ProcessEngine()
    try:
        engine.load(str(tiny_model), LoadParams(context_length=512, chat_template_override="{# #}"))
        with pytest.raises(EngineError, match="empty prompt"):
            list(engine.chat(HELLO, Sampling(max_tokens=4), threading.Event()))  # type: ignore[arg-type]
        child = engine._proc
        assert child is not None
        assert child.is_alive()
    finally:
        engine.close()

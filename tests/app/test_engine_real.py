"""The engine on the real starter model (SmolLM2-135M-Instruct): its tokenizer and template."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.llama_cpp_engine import LlamaCppEngine
from app.engine.types import LoadParams
from app.settings import Sampling

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(starter_model: Path, starter_params: LoadParams) -> Iterator[LlamaCppEngine]:
    e = LlamaCppEngine()
    e.load(str(starter_model), starter_params)
    yield e
    e.unload()


def test_streamed_reply_through_real_template(engine: LlamaCppEngine) -> None:
    assert engine.loaded is not None
    assert engine.loaded.template_source == "model"
    prompt = engine.format_prompt([{"role": "user", "content": "What is the capital of France?"}])
    assert prompt.rstrip().endswith("<|im_start|>assistant")
    reply = engine.chat(
        [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        Sampling(temperature=0, max_tokens=30),
        threading.Event(),
    )
    deltas = list(reply)
    text = "".join(deltas)
    assert len(deltas) > 1  # streamed, not delivered whole
    # No exact words from a 135M model: another processor's kernels round differently.
    assert any(c.isalpha() for c in text)
    assert "<|im_end|>" not in text  # the template's end of turn ends the reply, unseen
    assert "<|im_start|>" not in text
    if reply.stats.stop_reason != "eos":
        assert (reply.stats.stop_reason, reply.stats.generated_tokens) == ("length", 30)


def test_stop_mid_reply(engine: LlamaCppEngine) -> None:
    cancel = threading.Event()
    reply = engine.chat(
        [{"role": "user", "content": "Write a long essay about the history of bread."}],
        Sampling(temperature=0, max_tokens=500),
        cancel,
    )
    stopped_at = 0.0
    for n, _ in enumerate(reply, start=1):
        if n == 10:
            cancel.set()
            stopped_at = time.perf_counter()
    assert time.perf_counter() - stopped_at < 0.3
    assert reply.stats.stop_reason == "cancelled"
    assert reply.stats.generated_tokens <= 12


def test_follow_up_evaluates_only_new_tokens(engine: LlamaCppEngine) -> None:
    history = [{"role": "user", "content": "Name three colours."}]
    first = engine.chat(history, Sampling(temperature=0, max_tokens=40), threading.Event())  # type: ignore[arg-type]
    answer = "".join(first)
    history += [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And three animals?"},
    ]
    second = engine.chat(history, Sampling(temperature=0, max_tokens=20), threading.Event())  # type: ignore[arg-type]
    list(second)
    s = second.stats
    new_message_tokens = (
        20  # "<|im_end|>\n<|im_start|>user\nAnd three animals?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert s.prompt_tokens_evaluated <= new_message_tokens
    assert s.prompt_tokens > first.stats.prompt_tokens + 10

"""Stop strings and structured output (ReplyRules), in the engine on a tiny model, and the
scanner that holds back what may be the start of a stop string."""

from __future__ import annotations

import json
import threading

import pytest

from app.engine.grammar import InvalidRequest, grammar_for
from app.engine.llama_cpp_engine import LlamaCppEngine
from app.engine.stops import StopScanner
from app.engine.types import ChatMessage, ReplyRules
from app.settings import Sampling

HELLO: list[ChatMessage] = [{"role": "user", "content": "hello"}]
GREEDY = Sampling(max_tokens=40, temperature=0, repeat_penalty=1.0)


def test_scanner_holds_back_a_possible_stop_and_cuts_at_one() -> None:
    s = StopScanner(["\n\nUser:", "END"])
    assert [s.feed(x) for x in ["Hello", "\n", "\nUs", "er: more"]] == ["Hello", "", "", ""]
    assert s.matched
    s = StopScanner(["END"])
    assert [s.feed(x) for x in ["aE", "N", "x"]] == ["a", "", "ENx"]
    assert s.flush() == ""
    s = StopScanner(["END"])
    assert s.feed("the EN") == "the "
    assert s.flush() == "EN"  # the reply ended: it was not a stop string after all
    assert not StopScanner(["", ""])  # no stop strings: the engine skips the scanning


def test_stop_string_ends_the_reply_before_it(engine: LlamaCppEngine) -> None:
    full = "".join(engine.chat(HELLO, GREEDY, threading.Event()))
    assert len(full) > 12, full
    stop = full[8:11]
    reply = engine.chat(HELLO, GREEDY, threading.Event(), ReplyRules(stop=(stop, "never-there")))
    text = "".join(reply)
    assert stop not in text
    assert text == full[: full.index(stop)]
    assert reply.stats.stop_reason == "stop"


def test_plain_completion_has_no_template(engine: LlamaCppEngine) -> None:
    reply = engine.complete("<|im_start|>user\nhello", GREEDY, threading.Event())
    list(reply)
    chat = engine.chat(HELLO, GREEDY, threading.Event())
    list(chat)
    assert 0 < reply.stats.prompt_tokens < chat.stats.prompt_tokens


def test_json_schema_output_parses(engine: LlamaCppEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}},
        "required": ["n", "ok"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    reply = engine.chat(
        HELLO, Sampling(max_tokens=60, seed=5), threading.Event(), ReplyRules(response_format=fmt)
    )
    text = "".join(reply)
    if reply.stats.stop_reason == "eos":  # random weights may run out of tokens first
        value = json.loads(text)
        assert set(value) == {"n", "ok"}
    else:
        assert text.startswith("{")


def test_bad_response_formats_are_the_requests_fault() -> None:
    with pytest.raises(InvalidRequest):
        grammar_for({"type": "xml"})
    with pytest.raises(InvalidRequest):
        grammar_for({"type": "json_schema", "json_schema": {"schema": "not a schema"}})
    assert grammar_for({"type": "text"}) == ""
    assert "root" in grammar_for({"type": "json_object"})

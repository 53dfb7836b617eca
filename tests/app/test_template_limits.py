"""A chat template is code from the internet: one that never finishes is stopped with a plain
message, in the engine process and in this one, and the engine goes on working."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app.engine.llama_cpp_engine import LlamaCppEngine
from app.engine.process import ProcessEngine
from app.engine.templates import RENDER_SECONDS, ChatTemplate
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


def test_a_template_that_never_finishes_is_stopped_off_the_main_thread_too() -> None:
    """Where SIGALRM cannot stop it (another thread; Windows has none at all), the sandbox's
    own time limit does."""
    template = ChatTemplate(FOREVER, "", "")
    outcome: list[BaseException | str] = []

    def run() -> None:
        try:
            outcome.append(template.format(HELLO))  # type: ignore[arg-type]
        except BaseException as e:
            outcome.append(e)

    started = time.monotonic()
    worker = threading.Thread(target=run)
    worker.start()
    worker.join(RENDER_SECONDS + 5)
    assert not worker.is_alive()
    assert time.monotonic() - started < RENDER_SECONDS + 2
    assert isinstance(outcome[0], EngineError)
    assert "did not finish within" in str(outcome[0])
    assert "hello" in ChatTemplate("{{ messages[0]['content'] }}", "", "").format(HELLO)  # type: ignore[arg-type]


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


@pytest.mark.parametrize(
    ("architecture", "markers", "expected"),
    [
        ("gemma3", set(), ("detected", "gemma")),  # Gemma 3 270M has no template in its GGUF
        ("gemma2", {"<|im_start|>"}, ("detected", "gemma")),  # the architecture wins
        ("llama", {"<start_of_turn>"}, ("detected", "gemma")),
        ("llama", {"<|start_header_id|>", "<|eot_id|>"}, ("detected", "llama-3")),
        ("qwen2", {"<|im_start|>"}, ("detected", "chatml")),
        ("mistral", {"[INST]"}, ("detected", "mistral")),
        ("llama", set(), ("fallback", "chatml")),  # no clue: ChatML, the last resort
    ],
)
def test_a_model_without_a_template_gets_the_format_its_clues_indicate(
    architecture: str, markers: set[str], expected: tuple[str, str]
) -> None:
    from app.engine.templates import resolve_template

    _, source, name = resolve_template(None, "", architecture, markers.__contains__)
    assert (source, name) == expected
    # The model's own template and the user's choice come first.
    assert resolve_template("{{ x }}", "", architecture, markers.__contains__)[1] == "model"
    assert resolve_template("{{ x }}", "llama-3", architecture, markers.__contains__)[1:] == (
        "override",
        "llama-3",
    )


GEMMA_2_LIKE = (  # the shape of Gemma 2's own template: no system role
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\\n'"
    " + message['content'] + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)


def test_a_system_prompt_is_folded_into_the_first_message_where_the_template_has_no_role(
    tiny_model: Path,
) -> None:
    """Gemma 2 with a system prompt set: 'System role not supported' was the whole reply."""
    engine = ProcessEngine()
    try:
        engine.load(
            str(tiny_model), LoadParams(context_length=512, chat_template_override=GEMMA_2_LIKE)
        )
        chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
        reply = engine.chat(chat, Sampling(max_tokens=4, temperature=0), threading.Event())  # type: ignore[arg-type]
        assert list(reply)
        assert "no system role" in reply.stats.notice  # said once ...
        follow_up = [
            *chat,
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "more"},
        ]
        again = engine.chat(follow_up, Sampling(max_tokens=4, temperature=0), threading.Event())  # type: ignore[arg-type]
        assert list(again)
        assert again.stats.notice == ""  # ... not at every reply
    finally:
        engine.close()
    in_process = LlamaCppEngine()
    in_process.load(
        str(tiny_model), LoadParams(context_length=512, chat_template_override=GEMMA_2_LIKE)
    )
    prompt = in_process.format_prompt(chat)  # type: ignore[arg-type]
    in_process.unload()
    assert "<start_of_turn>user\nBe brief.\n\nhello<end_of_turn>" in prompt


@pytest.mark.parametrize(
    ("template", "why"),
    [
        # Fast enough to fill gigabytes well within the time limit, one piece at a time...
        ("{% for i in range(100000) %}{{ messages[0]['content'] * 200 }}{% endfor %}", "grew past"),
        # ...or in one operation, before anything is written.
        ("{{ 'x' * 10000000000 }}", "repeats a text"),
        ("{{ [1, 2] * 10000000000 }}", "repeats a text"),
        ("{{ 2 ** 1000000000 }}", "too large to write"),
    ],
)
def test_a_template_that_builds_something_huge_is_stopped_at_once(
    tiny_model: Path, template: str, why: str
) -> None:
    engine = LlamaCppEngine()
    engine.load(str(tiny_model), LoadParams(context_length=512, chat_template_override=template))
    started = time.monotonic()
    try:
        with pytest.raises(EngineError, match=why):
            engine.format_prompt(HELLO)  # type: ignore[arg-type]
        assert time.monotonic() - started < 1.0
    finally:
        engine.unload()


def test_template_variables_are_those_hugging_face_passes(tiny_model: Path) -> None:
    """A tool-use template that iterates ``tools`` without a guard, a date from strftime_now,
    the BOS token and raise_exception for roles it does not know."""
    template = (
        "{{ bos_token }}[{{ strftime_now('%Y') }}]"
        "{% for tool in tools %}{{ tool }}{% endfor %}"
        "{% for m in messages %}{% if m['role'] not in ['user', 'assistant'] %}"
        "{{ raise_exception('roles must alternate') }}{% endif %}"
        "{{ m['role'] }}: {{ m['content'] | tojson }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    engine = LlamaCppEngine()
    engine.load(str(tiny_model), LoadParams(context_length=512, chat_template_override=template))
    try:
        prompt = engine.format_prompt([{"role": "user", "content": "héllo"}])
        assert prompt.endswith(f'[{time.strftime("%Y")}]user: "héllo"\nassistant:')
        with pytest.raises(EngineError, match="roles must alternate"):
            engine.format_prompt([{"role": "tool", "content": "x"}])
    finally:
        engine.unload()

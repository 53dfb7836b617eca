"""Chat templates: the model's own (GGUF ``tokenizer.chat_template``), a user override, or a
clearly reported fallback when the model has none.

llama-cpp-python silently falls back to the llama-2 format when a model has no template; Hearth
says so instead, uses ChatML (what most modern small models were tuned on), and lets Settings pick.
``ChatTemplate`` applies the one picked to a conversation.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

from app.engine.template_sandbox import (
    TemplateTooLarge,
    TemplateTooSlow,
    compile_template,
    render,
)
from app.engine.types import ChatMessage, EngineError, LoadedModel

BUILTIN_TEMPLATES: dict[str, str] = {
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama-3": (
        "{{ bos_token }}{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
        " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "llama-2": (
        "{% if messages[0]['role'] == 'system' %}"
        "{% set system = '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' %}"
        "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}"
        "{{ bos_token + '[INST] ' + (system if loop.first else '')"
        " + message['content'] + ' [/INST]' }}"
        "{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}"
        "{% endfor %}"
    ),
    "mistral": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
        "{% else %}{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}"
    ),
    "gemma": (
        "{{ bos_token }}{% for message in messages %}"
        "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
        "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    ),
}
FALLBACK = "chatml"


# A model without a template is told apart by its architecture, else by the turn markers its
# vocabulary holds as single tokens (llama.cpp's own detection works from such clues): ChatML's
# markers are not in Gemma's vocabulary, so a Gemma fed ChatML rambles in fake turns.
_ARCHITECTURE_FORMATS = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma"}
_MARKER_FORMATS = [
    ("<start_of_turn>", "gemma"),
    ("<|start_header_id|>", "llama-3"),
    ("<|im_start|>", "chatml"),
    ("[INST]", "mistral"),
]


def resolve_template(
    model_template: str | None,
    override: str,
    architecture: str = "",
    has_token: Callable[[str], bool] = lambda _marker: False,
) -> tuple[str, str, str]:
    """Pick the template: ``(jinja_text, source, name)``, source ``model``, ``override``,
    ``detected`` (from the architecture or ``has_token``) or ``fallback`` (ChatML, last resort)."""
    override = override.strip()
    if override:
        if override in BUILTIN_TEMPLATES:
            return BUILTIN_TEMPLATES[override], "override", override
        return override, "override", "custom"
    if model_template:
        return model_template, "model", "model's own"
    name = _ARCHITECTURE_FORMATS.get(architecture) or next(
        (fmt for marker, fmt in _MARKER_FORMATS if has_token(marker)), None
    )
    if name:
        return BUILTIN_TEMPLATES[name], "detected", name
    return BUILTIN_TEMPLATES[FALLBACK], "fallback", FALLBACK


# A chat template is code from the internet: rendered in Jinja's sandbox with limits on what it
# builds (app/engine/template_sandbox.py), but nested loops can still run for hours. Real
# templates render in well under a millisecond.
RENDER_SECONDS = 2.0


_TooLong = TemplateTooSlow  # a render past RENDER_SECONDS, found by the sandbox or SIGALRM


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """End what runs inside after ``seconds`` with ``_TooLong``, through SIGALRM: possible only
    on the main thread of a Unix process (where the engine process renders). Everywhere else
    the sandbox's own time limit (``render(seconds=...)``) stops it."""
    alarm = getattr(signal, "SIGALRM", None)
    if alarm is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise _TooLong

    previous = signal.signal(alarm, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(alarm, previous)


class ChatTemplate:
    """A compiled chat template: conversations to the prompt text the model was tuned on.

    Keeps the last conversation formatted and its text: a chat sending what was prepared while
    the user typed does not render the template again.

    Raises:
        Exception: whatever Jinja2 raises for a template that does not compile.
    """

    def __init__(self, template: str, bos_text: str, eos_text: str) -> None:
        self._template = compile_template(template)
        self._bos, self._eos = bos_text, eos_text
        self._last: tuple[list[ChatMessage], bool, str] | None = None
        self.folds_system = False  # the template has no system role (see format)
        self._notice = ""
        self._thinking_switch: bool | None = None

    @property
    def has_thinking_switch(self) -> bool:
        """Whether ``enable_thinking`` changes the prompt (Qwen 3, SmolLM3, GLM-4.6…): whether a
        "think" switch does anything for this model. Found as llama.cpp finds it, by rendering a
        message both ways."""
        if self._thinking_switch is None:
            hello: list[ChatMessage] = [{"role": "user", "content": "Hello"}]
            try:
                self._thinking_switch = self.render(hello, enable_thinking=False) != self.render(
                    hello, enable_thinking=True
                )
            except Exception:  # a template that rejects the question has no switch to offer
                self._thinking_switch = False
        return self._thinking_switch

    def render(
        self,
        messages: list[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
    ) -> str:
        """The template applied to ``messages``, with the assistant's header to reply after
        (unless ``add_generation_prompt`` is False)."""
        with _time_limit(RENDER_SECONDS):
            return render(
                self._template,
                template_messages(messages),
                self._bos,
                self._eos,
                add_generation_prompt=add_generation_prompt,
                enable_thinking=enable_thinking,
                seconds=RENDER_SECONDS,
            )

    def format(self, messages: list[ChatMessage], enable_thinking: bool = True) -> str:
        """``render``, once per conversation; EngineError when the template rejects it or does
        not finish. ``enable_thinking`` False asks a reasoning model to answer without thinking,
        where its template has that switch (``has_thinking_switch``)."""
        last = self._last
        if last is not None and last[0] == messages and last[1] == enable_thinking:
            return last[2]
        try:
            try:
                prompt = self.render(messages, enable_thinking=enable_thinking)
            except (_TooLong, TemplateTooLarge):
                raise
            except Exception:
                folded = fold_system_prompt(messages)
                if folded is None:
                    raise
                # Templates without a system role (Gemma's) reject one; LM Studio and others
                # put the system prompt at the start of the first user message instead.
                prompt = self.render(folded, enable_thinking=enable_thinking)
                if not self.folds_system:
                    self.folds_system = True
                    self._notice = FOLDED_NOTICE
        except _TooLong:
            raise EngineError(
                f"The model's chat template did not finish within {RENDER_SECONDS:g} s (it may "
                "loop forever). Pick the model's format in Settings → Chat template."
            ) from None
        except TemplateTooLarge as e:
            raise EngineError(
                f"The model's chat template was stopped: {e}. Pick the model's format in "
                "Settings → Chat template."
            ) from None
        except Exception as e:
            raise EngineError(f"The model's chat template rejected the conversation: {e}") from None
        self._last = ([cast(ChatMessage, dict(m)) for m in messages], enable_thinking, prompt)
        return prompt

    def turn_end(self) -> str:
        """The marker the template writes right after an assistant's reply (``<|im_end|>``,
        ``<end_of_turn>``, ``<|eot_id|>``, ``</s>``…): where the model learnt to end its turn.
        "" when the template writes no marker there.

        Read from the template itself, as llama.cpp's chat-format analysis does. First the reply
        is rendered as the last message of a finished conversation, where templates write the
        marker that ends a generation (gpt-oss' ``<|return|>``, not the ``<|end|>`` that closes
        its messages in history); a template that writes nothing there (GLM's, whose model
        ends by starting the user's turn) is asked for the reply followed by a user message.
        """
        user: ChatMessage = {"role": "user", "content": "Hello"}
        reply: ChatMessage = {"role": "assistant", "content": _PROBE_REPLY}
        for convo, add_prompt in (([user, reply], False), ([user, reply, user], True)):
            try:
                text = self.render(convo, add_generation_prompt=add_prompt)
            except (_TooLong, TemplateTooLarge):  # no second wait for a template this slow
                return ""
            except Exception:  # a template that refuses such a conversation says nothing here
                continue
            at = text.find(_PROBE_REPLY)
            if at < 0:
                continue
            marker = _MARKUP.match(text, at + len(_PROBE_REPLY))
            if marker:
                return marker.group(1)
        return ""

    def take_notice(self) -> str:
        """What the user should hear once about how conversations are formatted (then "")."""
        notice, self._notice = self._notice, ""
        return notice


_PROBE_REPLY = "Hearth-probe-reply"
# A special token as templates write them: <|im_end|>, </s>, <｜end▁of▁sentence｜>, [EOT]…
_MARKUP = re.compile(r"\s*(<[^<>\s]{1,48}>|\[[^\[\]\s]{1,48}\])")
THINK_START, THINK_END = "<think>", "</think>"


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """``messages`` as chat templates expect them: an assistant reply's thinking (up to its
    ``</think>``) moved out of ``content`` into ``reasoning_content`` (and ``thinking``, gpt-oss'
    name for it), as llama.cpp's server passes replies it parsed, split where Qwen's and
    DeepSeek's templates split a reply themselves.

    Each template then decides whether earlier thinking goes back to the model: Qwen 3 and
    DeepSeek R1 leave it out, gpt-oss keeps it only around tool calls, Seed-OSS keeps it; one
    that knows neither field leaves it out, as reasoning models are meant to be prompted.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        content = m["content"]
        at = content.find(THINK_END) if m["role"] == "assistant" else -1
        if at < 0:
            out.append(dict(m))
            continue
        # The reply may start inside its thinking: R1's and others' prompts open the <think>.
        thought = content[:at].split(THINK_START)[-1].strip("\n")
        # The answer is all after the first end marker: it may mention "</think>" itself.
        rest = content[at + len(THINK_END) :].lstrip("\n")
        entry: dict[str, Any] = {**m, "content": rest}
        if thought.strip():
            entry["reasoning_content"] = thought
            entry["thinking"] = thought
        out.append(entry)
    return out


TEMPLATE_SOURCES = {
    "model": "the model's own chat template",
    "override": "the chat template picked in Settings",
    "detected": "a built-in template detected from the model's architecture and vocabulary",
    "fallback": "the fallback template (the model has none, and nothing says which it needs)",
}


def template_said(loaded: LoadedModel) -> str:
    """Which chat template formats a loaded model's prompts, in words."""
    source = TEMPLATE_SOURCES.get(loaded.template_source, loaded.template_source)
    return source + (f" ({loaded.template_name})" if loaded.template_source != "model" else "")


FOLDED_NOTICE = (
    "This model's chat template has no system role, so Hearth puts the system prompt at the "
    "start of your first message."
)


def fold_system_prompt(messages: list[ChatMessage]) -> list[ChatMessage] | None:
    """``messages`` with a leading system message folded into the first user message (None
    when there is no system message to fold)."""
    if not messages or messages[0]["role"] != "system":
        return None
    system, rest = messages[0]["content"], list(messages[1:])
    for i, m in enumerate(rest):
        if m["role"] == "user":
            rest[i] = {"role": "user", "content": f"{system}\n\n{m['content']}"}
            return rest
    return rest  # nothing to fold it into yet (the start of a new chat): leave it out

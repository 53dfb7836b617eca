"""Rendering chat templates, which are code from the internet, in Jinja's sandbox with limits.

The environment is the one Hugging Face's ``apply_chat_template`` gives templates (trim_blocks,
lstrip_blocks, loop controls, a ``tojson`` that keeps non-ASCII text, the ``{% generation %}``
tag passed through) and so are the variables: ``messages``, ``bos_token``, ``eos_token``,
``add_generation_prompt``, ``raise_exception``, ``strftime_now``, ``tools``; llama.cpp's server
adds ``date_string`` and ``datetime`` (today's date, which Llama 3.1's and FireFunction's
templates write into the system turn) and ``enable_thinking``, true unless a conversation turns
thinking off (templates made for GGUF files count on it being there: llama.cpp's copies of
QwQ's and DeepSeek R1's close the ``<think>`` at once when it is missing).

Jinja's sandbox already forbids file and attribute access and caps ``range``; on top of that a
prompt may not outgrow MAX_PROMPT_CHARS (checked as it is produced, so a template cannot fill
the memory before it ends), and ``'x' * n`` or ``a ** b`` that would build something huge are
refused before they run. A render may be given a time limit (``seconds``): checked at every
call, attribute and item a template uses and every piece it writes, so it holds on any
thread and any system (a loop can only go on by calling ``range`` or reading something again).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import BaseLoader, Template, nodes
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

# A 128k-token context holds about half a million characters: sixteen times that is no prompt.
MAX_PROMPT_CHARS = 8 << 20
MAX_POWER_BITS = 1 << 16  # 2 ** 65536 is already a 20,000-digit number


class TemplateTooLarge(Exception):
    pass


class TemplateTooSlow(Exception):
    """The render ran past its time limit."""


_deadline = threading.local()  # .at: the monotonic time a render on this thread must end by


def _check_time() -> None:
    at = getattr(_deadline, "at", None)
    if at is not None and time.monotonic() > at:
        raise TemplateTooSlow


class _GenerationTag(Extension):
    """``{% generation %}…{% endgeneration %}`` (marks assistant text for training): passed
    through, as Hugging Face renders it."""

    tags = {"generation"}  # noqa: RUF012 (Jinja reads it as a set)

    def parse(self, parser: Parser) -> list[nodes.Node]:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _check_time()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _check_time()
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and len(seq) * n > MAX_PROMPT_CHARS
                ):
                    raise TemplateTooLarge(f"the template repeats a text {n:,} times")
        if (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right * math.log2(abs(left)) > MAX_POWER_BITS
        ):
            raise TemplateTooLarge("the template computes a number too large to write")
        return super().call_binop(context, operator, left, right)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str) -> NoReturn:
    raise ValueError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def compile_template(source: str) -> Template:
    """Raises whatever Jinja raises for a template that does not compile."""
    env = _Environment(
        loader=BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, "jinja2.ext.loopcontrols"],
    )
    env.filters["tojson"] = _tojson
    return env.from_string(source)


def render(
    template: Template,
    messages: list[Any],
    bos_token: str,
    eos_token: str,
    limit: int = MAX_PROMPT_CHARS,
    *,
    add_generation_prompt: bool = True,
    enable_thinking: bool = True,
    seconds: float | None = None,
) -> str:
    """The prompt for ``messages``, with the assistant's header after them when
    ``add_generation_prompt``; ``TemplateTooSlow`` past ``seconds``.

    Templates written for tool use may iterate ``tools`` without a default: rendered first with
    none (``tools`` undefined-like None, which most test for), then with an empty list.
    """
    variables: dict[str, Any] = {
        "messages": messages,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "add_generation_prompt": add_generation_prompt,
        "raise_exception": _raise_exception,
        "strftime_now": _strftime_now,
        "date_string": datetime.now().strftime("%d %b %Y"),
        "datetime": datetime.now().strftime("%b %d %Y"),
        # FireFunction's template appends the tool list, as JSON text, to its system prompt
        # without a default; llama.cpp's FireFunction support passed "" when there were none.
        "functions": "",
        "enable_thinking": enable_thinking,
    }
    _deadline.at = None if seconds is None else time.monotonic() + seconds
    try:
        try:
            return _collect(template, {**variables, "tools": None}, limit)
        except (TemplateTooLarge, TemplateTooSlow):
            raise
        except TypeError:
            return _collect(template, {**variables, "tools": []}, limit)
    finally:
        _deadline.at = None


def _collect(template: Template, variables: dict[str, Any], limit: int) -> str:
    pieces: Iterator[str] = template.generate(**variables)
    parts: list[str] = []
    size = 0
    for piece in pieces:
        _check_time()
        size += len(piece)
        if size > limit:
            raise TemplateTooLarge(f"the prompt grew past {limit:,} characters")
        parts.append(piece)
    return "".join(parts)

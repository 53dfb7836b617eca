"""Conversation titles: from the first message at once, and from the model after the first reply.

The first words of a message make a poor title when it starts with a greeting or with code, so
the window may ask the loaded model for a short title once the first reply is in
(``title_request``), and keep what it wrote (``title_from_model``) unless the user has named the
conversation (``ChatStore.set_automatic_title``).
"""

from __future__ import annotations

import re

from app.engine.types import ChatMessage
from app.markdown_blocks import split_thinking

TITLE_LIMIT = 48

_FENCE = re.compile(r"```.*?(```|$)", re.DOTALL)
_MARKUP = re.compile(r"^[#>*\-+\s]+|\*+|`+")


def title_from(text: str, limit: int = TITLE_LIMIT) -> str:
    """A conversation title from its first message: its first words, without Markdown marks
    or code blocks (unless there is nothing else), on one line of at most ``limit``."""
    prose = _FENCE.sub(" ", text)
    if not prose.strip():
        prose = text.replace("```", " ")
    line = " ".join(_MARKUP.sub("", part) for part in prose.split("\n"))
    line = " ".join(line.split()) or " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def title_request(first_message: str, first_reply: str) -> list[ChatMessage]:
    """What to ask a model for a title of a conversation that began with these two messages
    (read as chat messages; a short ``max_tokens`` such as 24 is enough)."""
    excerpt = first_message.strip()[:1500]
    reply = first_reply.strip()[:500]
    return [
        {
            "role": "user",
            "content": (
                "Write a title of at most six words for a conversation that begins like this. "
                "Answer with the title only, in the language of the conversation.\n\n"
                f"User: {excerpt}\n\nAssistant: {reply}"
            ),
        }
    ]


_QUOTES = "\"'“”‘’«»"
_LABEL = re.compile(r"^\s*(title|titre|titel|título)\s*:\s*", re.IGNORECASE)


def title_from_model(text: str, limit: int = TITLE_LIMIT) -> str:
    """The title in what a model wrote for ``title_request``: its first non-empty line without a
    "Title:" label, quotes, Markdown marks or a final full stop; "" when nothing usable is left
    (a reasoning model's thinking, whatever its markers, is skipped; a reply that is all
    thinking gives "")."""
    split = split_thinking(text)
    if split.found and not split.closed:  # it never got past its thinking: no title in it
        return ""
    text = split.answer(text)
    line = next((x for x in text.splitlines() if x.strip()), "")
    line = _MARKUP.sub("", _LABEL.sub("", line))
    for _ in range(2):  # "Title." and "Title". alike
        line = line.strip().strip(_QUOTES).strip().rstrip(".。")
    return title_from(line, limit) if line else ""

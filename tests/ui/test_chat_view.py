"""The chat view's streaming: what a reply shows while it streams is what rendering it shows."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from pytestqt.qtbot import QtBot

from app.markdown_render import MarkdownRenderer
from ui.chat_view import MessageWidget

REPLIES = [
    "Lighthouses are tall towers on coasts. They guide ships at night: a keeper's work was hard,"
    ' and "lonely" too.\n\nThe second paragraph has **bold** words and *italic* ones, then plain'
    " words again, and more.",
    "- a list item that goes on and on\n- another item, continued with words\n\n1. first\n"
    "2. second item grows here",
    "> a quote that keeps\ngoing lazily with words\n\nText then `code` and more text, then a "
    "[link](https://example.org) and words.",
    "| a | b |\n|---|---|\n| cell one | cell two\nbar baz\n\nAfter the table, words & more; fin.",
    "```python\ndef f(x):\n    return x\n```\nAfter the code, words and words.",
    "Snake_case words and 3.5 numbers, 10% off, $5, a/b, x=y+z. Done — really… “quoted”.",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_a_reply_streamed_in_pieces_shows_what_rendering_it_whole_shows(
    qtbot: QtBot, reply: str
) -> None:
    renderer = MarkdownRenderer()
    rng = random.Random(reply)
    updates = renders = 0
    for _ in range(5):
        own = MarkdownRenderer()
        render = own.render

        def counted(text: str, render: Callable[[str], str] = render) -> str:
            nonlocal renders
            renders += 1
            return render(text)

        own.render = counted  # type: ignore[method-assign]
        streamed = MessageWidget("assistant", own)
        qtbot.addWidget(streamed)
        content = ""
        while len(content) < len(reply):
            content = reply[: len(content) + rng.randint(1, 12)]
            streamed.set_content(content, streaming=True)
            updates += 1
            whole = MessageWidget("assistant", renderer)
            qtbot.addWidget(whole)
            whole.set_content(content, streaming=True)
            assert streamed.text.toHtml() == whole.text.toHtml(), content
    assert renders < updates  # somewhere words were appended instead of rendered again

"""The chat view's streaming: what a reply shows while it streams is what rendering it shows, and
an update renders only what changed, however big the reply."""

from __future__ import annotations

import random

import pytest
from pytestqt.qtbot import QtBot

from app.chats.records import Message
from app.markdown_render import MarkdownRenderer
from ui.chat_view import ChatView, MessageWidget
from ui.code_block import CodeBlock
from ui.item_models import MessageListModel
from ui.markdown_pieces import LongBlock, MessageText

REVEAL = 400  # what the chat page shows per event-loop pass

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
    "Roses are red,\nViolets are blue.\n\nHere:\n\ndef f(n):\n    if n < 2:\n        return 1\n"
    "    return n\n```\nThat was code.",
    ("A paragraph about **lighthouses** and the sea, long enough to matter. " * 4 + "\n\n") * 6
    + "```js\nlet x = 1;\n```\n\n| n | sq |\n|---|---|\n"
    + "".join(f"| {i} | {i * i} |\n" for i in range(70))
    + "\nThe end.",
]


def pieces(widget: MessageWidget) -> list[tuple[str, str]]:
    """What the reply shows, piece by piece: the kind of piece and its text."""
    return [
        (type(p).__name__, p.toPlainText() if isinstance(p, MessageText) else p.plain_text())
        for p in widget.content.pieces()
    ]


class CountingRenderer(MarkdownRenderer):
    """Remembers every Markdown source it rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def render(self, text: str) -> str:
        self.sources.append(text)
        return super().render(text)


@pytest.mark.parametrize("reply", REPLIES)
def test_a_reply_streamed_in_pieces_shows_what_rendering_it_whole_shows(
    qtbot: QtBot, reply: str
) -> None:
    rng = random.Random(reply)
    updates = renders = 0
    for _ in range(3):
        renderer = CountingRenderer()
        streamed = MessageWidget("assistant", renderer)
        qtbot.addWidget(streamed)
        content = ""
        while len(content) < len(reply):
            content = reply[: len(content) + rng.randint(1, 40)]
            streamed.set_content(content, streaming=True)
            updates += 1
            whole = MessageWidget("assistant", MarkdownRenderer())
            qtbot.addWidget(whole)
            whole.set_content(content, streaming=True)
            qtbot.waitUntil(lambda w=whole: not w.content.rendering())
            qtbot.waitUntil(lambda s=streamed: not s.content.rendering())
            assert pieces(streamed) == pieces(whole), content
            assert streamed.text.toHtml() == whole.text.toHtml(), content
        renders += len(renderer.sources)
        streamed.set_content(reply)  # finished: what a reopened conversation shows
        whole = MessageWidget("assistant", MarkdownRenderer())
        qtbot.addWidget(whole)
        whole.set_content(reply)
        qtbot.waitUntil(
            lambda w=whole, s=streamed: not (w.content.rendering() or s.content.rendering())
        )
        assert pieces(streamed) == pieces(whole)
    assert renders < updates  # somewhere words were appended instead of rendered again


def test_streaming_a_big_reply_renders_each_block_once(qtbot: QtBot) -> None:
    intro = "Here is the program, with notes.\n\n" + "A note about **it**. " * 30 + "\n\n"
    code = "".join(f"    total += step({i})  # {i}\n" for i in range(20_000))  # ~600 KB
    table = "| n | sq |\n|---|---|\n" + "".join(f"| {i} | {i * i} |\n" for i in range(5_000))
    reply = intro + "```python\ndef run():\n" + code + "```\n\n" + table + "\nThat is all."
    renderer = CountingRenderer()
    widget = MessageWidget("assistant", renderer)
    qtbot.addWidget(widget)
    for end in range(REVEAL, len(reply) + REVEAL, REVEAL):
        widget.set_content(reply[:end], streaming=True)
    widget.set_content(reply)
    qtbot.waitUntil(lambda: not widget.content.rendering())
    rendered = "".join(renderer.sources)
    # The code never goes through Markdown, the table's rows beyond its first are not rendered,
    # and the prose before them is rendered about once, not at every update.
    assert "step(100)" not in rendered
    assert "| 4999 |" not in rendered
    assert len(rendered) < 3 * len(intro) + 10_000
    kinds = [type(p) for p in widget.content.pieces()]
    assert kinds == [MessageText, CodeBlock, LongBlock, MessageText]
    [block] = [p for p in widget.content.pieces() if isinstance(p, CodeBlock)]
    assert not block.more.isHidden()
    block.more.click()
    assert block.plain_text() == "def run():\n" + code.rstrip("\n")
    widget.copy_button.click()  # the message's Copy: its Markdown, whole
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == reply


def test_a_huge_reply_in_a_conversation_shows_without_rendering_it_whole(qtbot: QtBot) -> None:
    fence = "```\n" + "line of code\n" * 100_000 + "```\n"  # 1.3 MB
    model = MessageListModel()
    view = ChatView(model)
    qtbot.addWidget(view)
    view.resize(900, 700)
    model.set_messages(
        [
            Message(1, 1, None, "user", "Print it all."),
            Message(2, 1, None, "assistant", "Here:\n\n" + fence + "\nDone."),
        ]
    )
    reply = view.message_widgets()[1]
    qtbot.waitUntil(lambda: not reply.content.rendering())
    [block] = [p for p in reply.content.pieces() if isinstance(p, CodeBlock)]
    assert block.more.text() == "Show all 100,000 lines"
    assert len(reply.plain_text()) < 5_000
    assert "Done." in reply.text.toPlainText()


def test_a_huge_pasted_message_shows_its_start_as_typed(qtbot: QtBot) -> None:
    pasted = "**not bold** " + "log line 12:00:01 ok\n" * 50_000  # 1 MB of a log
    widget = MessageWidget("user", MarkdownRenderer())
    qtbot.addWidget(widget)
    widget.set_content(pasted)
    [block] = widget.content.pieces()
    assert isinstance(block, LongBlock)
    assert block.head.toPlainText().startswith("**not bold** log line")  # as typed
    assert len(widget.plain_text()) < 5_000
    block.more.click()
    assert widget.plain_text() == pasted
    widget.copy_button.click()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == pasted

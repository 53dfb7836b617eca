"""A reasoning model's thinking in the window: open while it streams, folded with how long it took
once the answer starts, still so after reopening; a reply that starts inside its thinking; one
stopped mid-thought; Copy; and the thinking is not sent back where the template drops it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from app.engine.templates import ChatTemplate
from app.markdown_render import MarkdownRenderer
from tests.fake_engine import FakeEngine
from ui.chat_view import MessageWidget
from ui.main_window import MainWindow
from ui.thinking_section import ThinkingSection, thinking_label

TEMPLATES = Path(__file__).parent.parent / "data" / "templates"
THINKING = [
    "<think>",
    "\nThe user",
    " greets me.",
    " I should",
    " greet them",
    " back.",
    "\n</think>",
]
ANSWER = ["\n\n", "Hello", " there!", " How", " can I", " help?"]


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    page = window.chat_page
    page.input.setPlainText(text)
    with qtbot.waitSignal(window.engine.reply_finished, timeout=10_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)


def reply_widget(window: MainWindow) -> MessageWidget:
    return window.chat_page.view.message_widgets()[-1]


def section(widget: MessageWidget) -> ThinkingSection:
    assert widget.thinking is not None
    assert not widget.thinking.isHidden()
    return widget.thinking


def test_thinking_streams_open_then_folds_with_its_time_when_the_answer_starts(
    qtbot: QtBot, make_window: Callable[..., MainWindow], fake_engine: FakeEngine
) -> None:
    fake_engine.words = THINKING + ANSWER
    fake_engine.delay = 0.06
    window = make_window()
    page = window.chat_page
    page.input.setPlainText("Hi!")
    page.send()
    qtbot.waitUntil(lambda: "greet them" in page.messages.message(1).content, timeout=5000)
    thoughts = section(reply_widget(window))
    assert thoughts.expanded
    assert thoughts.toggle.text() == "Thinking…"
    qtbot.waitUntil(lambda: "greet them" in thoughts.plain_text())
    assert "<think>" not in thoughts.plain_text()
    assert reply_widget(window).plain_text().strip() == ""  # no answer yet
    with qtbot.waitSignal(window.engine.reply_finished, timeout=5000):
        qtbot.waitUntil(lambda: "Hello" in page.messages.message(1).content, timeout=5000)
        assert not thoughts.expanded  # folded as soon as the answer began
        # ~0.36 s: from the first word to </think>, 6 words at 60 ms
        assert re.fullmatch(r"Thought for \d\.\d s", thoughts.toggle.text())
    reply = reply_widget(window)
    assert reply.plain_text() == "Hello there! How can I help?"
    assert not section(reply).expanded
    assert section(reply).plain_text() == ""
    assert page.conversation is not None
    saved = window.store.messages(page.conversation.id)[1]
    assert 0.3 < saved.stats["thinking_seconds"] < 5.0
    assert saved.content == "".join(THINKING + ANSWER)  # stored as the model wrote it
    label = section(reply).toggle.text()
    assert label == thinking_label(False, True, saved.stats["thinking_seconds"])

    section(reply).toggle.click()  # a click opens it, another folds it
    assert section(reply).expanded
    assert section(reply).plain_text() == "The user greets me. I should greet them back."
    section(reply).toggle.click()
    assert not section(reply).expanded
    assert section(reply).plain_text() == ""

    conversation = page.conversation.id
    window.close()
    window.engine.shutdown()
    again = make_window()
    again.open_conversation(conversation)
    reopened = section(reply_widget(again))
    assert not reopened.expanded  # reopened folded, with its time
    assert reopened.toggle.text() == label
    assert reply_widget(again).plain_text() == "Hello there! How can I help?"


def test_a_reply_that_starts_inside_its_thinking(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    """DeepSeek R1's template opens the <think>: the reply shows only its end."""
    fake_engine.words = THINKING[1:] + ANSWER
    fake_engine.delay = 0.02
    send(qtbot, window, "Hi!")
    reply = reply_widget(window)
    thoughts = section(reply)
    assert not thoughts.expanded
    assert thoughts.toggle.text().startswith("Thought for ")
    assert thoughts.thinking_text == "The user greets me. I should greet them back."
    assert reply.plain_text() == "Hello there! How can I help?"


def test_a_reply_stopped_mid_thought_keeps_its_thoughts_as_thoughts(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    fake_engine.words = ["<think>", "\nHmm"] + [f" w{i}" for i in range(300)]
    fake_engine.delay = 0.01
    page = window.chat_page
    page.input.setPlainText("Think hard")
    page.send()
    qtbot.waitUntil(lambda: "w5" in page.messages.message(1).content, timeout=5000)
    assert section(reply_widget(window)).expanded
    with qtbot.waitSignal(window.engine.reply_finished, timeout=5000):
        page.stop()
    reply = reply_widget(window)
    thoughts = section(reply)
    assert not thoughts.expanded
    assert thoughts.toggle.text().startswith("Thought for ")
    assert thoughts.toggle.text().endswith("(unfinished)")
    assert reply.plain_text().strip() == ""  # nothing was answered
    assert "Stopped" in reply.footer.text()
    reply.copy_button.click()  # with no answer, Copy gives the thoughts
    assert QGuiApplication.clipboard().text().startswith("Hmm w0 w1")


def test_copy_gives_the_answer_and_the_thinking_has_its_own_copy(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    fake_engine.words = THINKING + ANSWER
    send(qtbot, window, "Hi!")
    reply = reply_widget(window)
    reply.copy_button.click()
    assert QGuiApplication.clipboard().text() == "Hello there! How can I help?"
    thoughts = section(reply)
    assert thoughts.copy_button.isHidden()  # folded: nothing to copy in sight
    thoughts.toggle.click()
    thoughts.copy_button.click()
    assert QGuiApplication.clipboard().text() == "The user greets me. I should greet them back."


QWEN3 = ("Qwen-Qwen3-0.6B", "<|endoftext|>", "<|im_end|>")
GPT_OSS = ("openai-gpt-oss-120b", "<|startoftext|>", "<|return|>")
HARMONY = [
    "<|channel|>",
    "analysis",
    "<|message|>",
    "The user greets me. I should greet them back.",
    "<|start|>",
    "assistant",
    "<|channel|>",
    "final",
    "<|message|>",
    *ANSWER[1:],
]


@pytest.mark.parametrize(
    ("words", "template"),
    [(THINKING + ANSWER, QWEN3), (HARMONY, GPT_OSS)],
    ids=["qwen3", "gpt-oss"],
)
def test_thinking_is_not_sent_back_in_the_next_turn(
    qtbot: QtBot,
    window: MainWindow,
    fake_engine: FakeEngine,
    words: list[str],
    template: tuple[str, str, str],
) -> None:
    fake_engine.words = words
    send(qtbot, window, "Hi!")
    assert reply_widget(window).plain_text() == "Hello there! How can I help?"
    assert section(reply_widget(window)).thinking_text.startswith("The user greets me.")
    fake_engine.words = ["Four."]
    send(qtbot, window, "What is 2 + 2?")
    name, bos, eos = template
    chat_template = ChatTemplate((TEMPLATES / f"{name}.jinja").read_text(), bos, eos)
    prompt = chat_template.format(fake_engine.calls[-1])  # what the model reads next
    assert "greet them back" not in prompt
    assert "Hello there! How can I help?" in prompt
    assert prompt.count("What is 2 + 2?") == 1


class CountingRenderer(MarkdownRenderer):
    def __init__(self) -> None:
        super().__init__()
        self.rendered = 0

    def render(self, text: str) -> str:
        self.rendered += len(text)
        return super().render(text)


def test_streaming_thoughts_cost_their_new_text(qtbot: QtBot) -> None:
    """Long thinking streamed in small pieces costs what the same text costs as an answer: the
    paragraph that grows is rendered again, not all the thoughts at every update."""
    paragraph = "I consider **this** option and weigh it against the other one, carefully. "
    text = "".join(f"{paragraph * 3}\n\n" for _ in range(60))
    costs = []
    for reply in ("<think>\n" + text, text):
        renderer = CountingRenderer()
        widget = MessageWidget("assistant", renderer)
        qtbot.addWidget(widget)
        for end in range(40, len(reply), 40):
            widget.set_content(reply[:end], streaming=True)
        view = widget.thinking.view if widget.thinking is not None else widget.content
        qtbot.waitUntil(lambda v=view: not v.rendering())
        assert view.plain_text().count("I consider") > 170
        costs.append(renderer.rendered)
    assert costs[0] <= 1.1 * costs[1] + 1_000
    assert costs[0] < 20 * len(text)  # each update rendering all the thoughts: ~170x


def test_long_thoughts_fold_when_the_answer_starts(qtbot: QtBot) -> None:
    text = "".join(f"Step {i}: I weigh this against that.\n\n" for i in range(200))
    widget = MessageWidget("assistant", MarkdownRenderer())
    qtbot.addWidget(widget)
    for end in range(50, len(text), 50):
        widget.set_content("<think>\n" + text[:end], streaming=True)
    thoughts = section(widget)
    qtbot.waitUntil(lambda: not thoughts.view.rendering())
    assert thoughts.expanded
    assert thoughts.plain_text().count("I weigh") >= 199
    widget.set_content(f"<think>\n{text}</think>\n\nDone.", streaming=False)
    assert not thoughts.expanded
    assert widget.plain_text() == "Done."


def test_thinking_the_user_opened_or_closed_while_streaming_stays_so(qtbot: QtBot) -> None:
    widget = MessageWidget("assistant", MarkdownRenderer())
    qtbot.addWidget(widget)
    widget.set_content("<think>\nFirst", streaming=True)
    thoughts = section(widget)
    thoughts.toggle.click()  # folded by hand while it streams
    widget.set_content("<think>\nFirst thought, and more", streaming=True)
    assert not thoughts.expanded
    thoughts.toggle.click()
    widget.set_content("<think>\nFirst thought, and more and more", streaming=True)
    assert thoughts.expanded
    assert "more and more" in thoughts.plain_text()


def test_an_empty_thought_shows_no_section(qtbot: QtBot) -> None:
    """Qwen 3 with thinking off answers after an empty <think></think>."""
    widget = MessageWidget("assistant", MarkdownRenderer())
    qtbot.addWidget(widget)
    widget.set_content("<think>\n\n</think>\n\nJust the answer.")
    assert widget.thinking is None
    assert widget.plain_text() == "Just the answer."


def test_the_toggle_is_reached_with_tab_and_says_what_it_does(qtbot: QtBot) -> None:
    widget = MessageWidget("assistant", MarkdownRenderer())
    qtbot.addWidget(widget)
    widget.set_content("<think>\nHmm.\n</think>\n\nYes.")
    widget.set_footer("complete", None, {"thinking_seconds": 3.21}, "Qwen3")
    toggle = section(widget).toggle
    assert toggle.focusPolicy() & Qt.FocusPolicy.TabFocus
    assert toggle.accessibleName() == "Thought for 3.2 s, show the model's thinking"
    toggle.setFocus()
    qtbot.keyClick(toggle, Qt.Key.Key_Space)
    assert section(widget).expanded
    assert toggle.accessibleName() == "Thought for 3.2 s, hide the model's thinking"

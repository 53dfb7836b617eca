"""A reasoning model's thinking, above its answer: open while the model thinks, folded away with
how long it thought once the answer starts (or the reply ends), opened again by a click.

The thinking is rendered as the answer is (``MarkdownView``: an update costs the new text), and
only while it is open: a conversation of long-thinking replies reopens without rendering them.
``ThinkingClock`` times a streaming reply's thinking for the chat page, which saves it with the
reply's stats (``thinking_seconds``), so that "Thought for 12 s" survives a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QToolButton, QVBoxLayout, QWidget

from app.markdown_blocks import (
    HARMONY_THINKING_ENDS,
    THINKING_MARKERS,
    ThinkingSplit,
    split_thinking,
)
from app.markdown_render import MarkdownRenderer
from app.units import long_duration
from ui.markdown_pieces import copy_with_feedback
from ui.markdown_view import MarkdownView

_ENDS = (*(closer for _, closer in THINKING_MARKERS), *HARMONY_THINKING_ENDS)
_TAIL = max(map(len, _ENDS)) - 1


class ThinkingClock:
    """How long a streaming reply thinks: from its first text to the end of its thinking (or,
    for thinking cut short, to its last text).

    ``before``: a continued reply's earlier text; when that already held thinking, its start
    was not seen here and no time is given.
    """

    def __init__(self, before: str = "") -> None:
        self._off = bool(before) and split_thinking(before).found
        self._first: float | None = None
        self._last = 0.0
        self.ended_at: float | None = None
        self._tail = ""

    def feed(self, delta: str, reply: Callable[[], str]) -> bool:
        """Note streamed text (``reply`` gives the whole reply so far, asked only when an end
        marker shows up); True when the thinking has just ended."""
        now = time.monotonic()
        if self._first is None:
            self._first = now
        self._last = now
        if self.ended_at is not None or self._off:
            return False
        seen = self._tail + delta
        self._tail = seen[-_TAIL:]
        if any(marker in seen for marker in _ENDS):
            split = split_thinking(reply())
            if split.found and split.closed:
                self.ended_at = now
                return True
        return False

    @property
    def thought(self) -> float | None:
        """Seconds from the first text to the end of the thinking, once it has ended."""
        if self.ended_at is None or self._first is None:
            return None
        return self.ended_at - self._first

    def seconds(self, reply: str) -> float | None:
        """How long the finished ``reply`` thought (None: it has no thinking, or it was not
        seen whole)."""
        if self._off or self._first is None:
            return None
        split = split_thinking(reply)
        if not split.found:
            return None
        if not split.closed:
            return self._last - self._first
        return self.thought


def thinking_label(thinking: bool, closed: bool, seconds: float | None) -> str:
    """The section's title: "Thinking…" while the model thinks, "Thought for 12 s" after."""
    if thinking:
        return "Thinking…"
    if seconds is None:
        label = "Thoughts"
    elif seconds < 10:
        label = f"Thought for {max(seconds, 0.1):.1f} s"
    else:
        label = f"Thought for {long_duration(seconds)}"
    return label if closed else f"{label} (unfinished)"


class ThinkingSection(QFrame):
    """The title ("Thinking…", "Thought for 12 s") as a toggle, Copy, and the thoughts."""

    def __init__(self, renderer: MarkdownRenderer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("thinkingSection")
        self.renderer = renderer
        self.toggle = QToolButton()
        self.toggle.setObjectName("thinkingToggle")
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.clicked.connect(self._clicked)
        self.copy_button = QToolButton()
        self.copy_button.setText("Copy thoughts")
        self.copy_button.setToolTip(
            "Copy the model's thinking (the message's Copy copies its answer)"
        )
        self.copy_button.setAutoRaise(True)
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        self.copy_button.hide()
        self.body = QFrame()
        self.body.setObjectName("thinkingBody")
        self.body.setFrameShape(QFrame.Shape.StyledPanel)  # so that its border is drawn
        self.view = MarkdownView(renderer)
        self.view.text.setAccessibleName("The model's thinking")
        body_layout = QVBoxLayout(self.body)
        body_layout.setContentsMargins(10, 0, 0, 2)
        body_layout.addWidget(self.view)
        self.body.hide()
        dark = renderer.dark
        self.setStyleSheet(
            f"QToolButton {{ color: {renderer.muted}; }}"
            "QToolButton#thinkingToggle { border: none; background: transparent; padding: 2px 0; }"
            f"QToolButton#thinkingToggle:hover {{ color: {renderer.code_fg}; }}"
            f"QFrame#thinkingBody {{ border: none; border-left: 2px solid "
            f"{'#4a4a52' if dark else '#d4d4da'}; }}"
            f"QFrame#thinkingBody QTextBrowser {{ color: {'#b8b8be' if dark else '#50505a'}; }}"
        )
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.toggle)
        top.addStretch(1)
        top.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 6)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.body)
        self._text = ""
        self._thinking = False  # the model is thinking now (the section streams)
        self._closed = True
        self._seconds: float | None = None
        self._chosen = False  # the user opened or closed it while the model was thinking
        self._rendered: tuple[str, bool] | None = None
        self._update_title()

    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()

    @property
    def thinking_text(self) -> str:
        return self._text

    def set_thinking(self, text: str, thinking: bool, closed: bool) -> None:
        """The thoughts so far; ``thinking``: the model is still at them (the reply streams and
        its thinking has not closed); ``closed``: its end marker came."""
        started, ended = thinking and not self._thinking, self._thinking and not thinking
        self._text, self._thinking, self._closed = text, thinking, closed
        if started and not self._chosen:
            self._set_expanded(True)  # open while it streams
        elif ended:
            self._chosen = False
            self._set_expanded(False)  # folded away once the answer starts or the reply ends
        elif self.expanded:
            self._render()
            self._show_body()
        self._update_title()

    def set_seconds(self, seconds: float | None) -> None:
        if seconds != self._seconds:
            self._seconds = seconds
            self._update_title()

    def set_expanded(self, expanded: bool) -> None:
        if expanded != self.expanded:
            self._set_expanded(expanded)

    @Slot(bool)
    def _clicked(self, checked: bool) -> None:
        self._chosen = self._thinking
        self._set_expanded(checked)

    def _set_expanded(self, expanded: bool) -> None:
        self.toggle.setChecked(expanded)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        if expanded:
            self._render()
        self._show_body()
        self._update_title()

    def _render(self) -> None:
        shown = (self._text, self._thinking)
        if shown != self._rendered:
            self._rendered = shown
            self.view.set_markdown(self._text, streaming=self._thinking)

    def _show_body(self) -> None:
        visible = self.expanded and bool(self._text)  # the text comes without blank ends
        if visible == self.body.isHidden():
            self.body.setVisible(visible)
            self.copy_button.setVisible(visible)

    def _update_title(self) -> None:
        title = thinking_label(self._thinking, self._closed, self._seconds)
        if self.toggle.text() != title:
            self.toggle.setText(title)
        # Read out with what a press does: "Thought for 12 s, show the model's thinking".
        name = f"{title}, {'hide' if self.expanded else 'show'} the model's thinking"
        if self.toggle.accessibleName() != name:
            self.toggle.setAccessibleName(name)

    @Slot()
    def copy_to_clipboard(self) -> None:
        copy_with_feedback(self._text, self.copy_button)

    def plain_text(self) -> str:
        """The thoughts as shown (nothing while folded)."""
        return "" if self.body.isHidden() else self.view.plain_text()


def shows_thinking(split: ThinkingSplit) -> bool:
    """Whether a reply gets a thinking section: it has thinking that goes on or says something
    (Qwen 3 answers with thinking off after an empty ``<think></think>``)."""
    return split.found and (not split.closed or split.thinking_start < split.thinking_end)

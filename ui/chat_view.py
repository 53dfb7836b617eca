"""The conversation on screen: one widget per message, driven by ``MessageListModel`` signals.

Only the message whose row changed is rendered and laid out again; long conversations show their
latest messages and load earlier ones on demand.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chats.history import can_continue
from app.markdown_blocks import ThinkingSplit, split_thinking
from app.markdown_render import MarkdownRenderer
from app.units import short_duration
from ui.item_models import MessageListModel, MessageRole
from ui.markdown_pieces import MessageText, copy_with_feedback
from ui.markdown_view import MarkdownView
from ui.message_actions import MessageActions, MessageEditor
from ui.thinking_section import ThinkingSection, shows_thinking

PAGE = 60  # messages shown at first; more on demand
HIGHLIGHT_MS = 2500  # how long an opened search hit stays marked


class MessageWidget(QFrame):
    """One message: a header (who, and the message's actions), its content, a footer (status
    and figures). The content is a ``MarkdownView`` for replies, plain text for the user's; a
    reasoning model's thinking is in a ``ThinkingSection`` above its answer."""

    prompt_requested = Signal(int)  # message id: show the prompt this reply was made from
    action_requested = Signal(str, int)  # MessageActions.requested: action, message id
    edit_submitted = Signal(int, str)  # a user message's id, its new text

    def __init__(
        self, role: str, renderer: MarkdownRenderer, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.role = role
        self.setObjectName("userMessage" if role == "user" else "assistantMessage")
        self.setFrameShape(QFrame.Shape.StyledPanel if role == "user" else QFrame.Shape.NoFrame)
        self._source = ""
        self._split = ThinkingSplit()  # where a reply's thinking and answer are
        self.thinking: ThinkingSection | None = None  # made for a reply that thinks
        self._thinking_shown: tuple[int, int, bool, bool] | None = None
        self._renderer = renderer
        self._message_id = 0
        self.editor: MessageEditor | None = None
        self.action_bar = MessageActions(role)
        self.action_bar.requested.connect(self.action_requested)
        self.header = QLabel("You" if role == "user" else "Assistant")
        self.header.setObjectName("messageHeader")
        self.copy_button = QToolButton()
        self.copy_button.setText("Copy")
        self.copy_button.setToolTip(
            "Copy the whole message as Markdown"
            if role == "user"
            else "Copy the answer as Markdown"
        )
        self.copy_button.setAutoRaise(True)
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        self.copy_button.hide()
        self.prompt_button = QToolButton()
        self.prompt_button.setText("Prompt")
        self.prompt_button.setToolTip("View the text the model read for this reply")
        self.prompt_button.setAutoRaise(True)
        self.prompt_button.clicked.connect(lambda: self.prompt_requested.emit(self.message_id))
        self.prompt_button.hide()
        header_row = QHBoxLayout()
        header_row.setContentsMargins(0, 0, 0, 0)
        header_row.addWidget(self.header)
        header_row.addStretch(1)
        header_row.addWidget(self.action_bar)
        header_row.addWidget(self.prompt_button)
        header_row.addWidget(self.copy_button)

        self.content = MarkdownView(renderer)
        self.text.setAccessibleName("Your message" if role == "user" else "Assistant reply")

        self.footer = QLabel()
        self.footer.setObjectName("messageFooter")
        self.footer.setWordWrap(True)
        self.footer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.footer.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(2)
        layout.addLayout(header_row)
        layout.addWidget(self.content)
        layout.addWidget(self.footer)

    @property
    def message_id(self) -> int:
        return self._message_id

    @message_id.setter
    def message_id(self, value: int) -> None:
        self._message_id = value
        self.action_bar.message_id = value

    def start_editing(self) -> None:
        """Edit a user message in place: Send makes a new version (``edit_submitted``)."""
        if self.role != "user" or self.editor is not None:
            return
        self.editor = MessageEditor(self._source)
        self.editor.submitted.connect(self._edited)
        self.editor.cancelled.connect(self.stop_editing)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(layout.indexOf(self.content), self.editor)
        self.content.hide()
        self.action_bar.hide()
        self.editor.start()

    def highlight(self) -> None:
        """Mark the message for a moment (a search hit that was opened)."""
        self.setProperty("highlighted", True)
        self.style().unpolish(self)
        self.style().polish(self)
        QTimer.singleShot(HIGHLIGHT_MS, self._unhighlight)

    @Slot()
    def _unhighlight(self) -> None:
        self.setProperty("highlighted", False)
        self.style().unpolish(self)
        self.style().polish(self)

    @Slot()
    def stop_editing(self) -> None:
        if self.editor is not None:
            self.editor.deleteLater()
            self.editor = None
        self.content.show()
        self.action_bar.show()

    @Slot(str)
    def _edited(self, text: str) -> None:
        self.stop_editing()
        self.edit_submitted.emit(self.message_id, text)

    @property
    def text(self) -> MessageText:
        """The content's last prose piece: a user's whole message; the part of a reply that
        grows while it streams (all of a short finished reply without code blocks)."""
        return self.content.text

    @property
    def _frozen(self) -> list[QWidget]:
        return list(self.content.frozen)

    def set_content(self, content: str, streaming: bool = False) -> None:
        grows = streaming and content.startswith(self._source)
        self._source = content
        self.copy_button.setVisible(bool(content))  # a user's message can be copied too
        if self.role == "user":
            self.content.set_plain(content)
            return
        self.prompt_button.setVisible(bool(content) and not streaming)
        if not content:
            self._split = ThinkingSplit()
            self._show_thinking(content, streaming, grows=False)
            self.content.show_html("<p style='color:gray'>…</p>")
            return
        # A streaming reply is searched for the end of its thinking in its new text only.
        self._split = split_thinking(content, streaming, self._split.searched if grows else 0)
        self._show_thinking(content, streaming, grows)
        self.content.set_markdown(self._split.answer(content), streaming)

    def _show_thinking(self, content: str, streaming: bool, grows: bool) -> None:
        split = self._split
        if not shows_thinking(split):
            if self.thinking is not None:
                self.thinking.hide()
            return
        if self.thinking is None:
            self.thinking = ThinkingSection(self._renderer)
            layout = self.layout()
            assert isinstance(layout, QVBoxLayout)
            layout.insertWidget(layout.indexOf(self.content), self.thinking)
        self.thinking.show()
        thinking = streaming and not split.closed
        shown = (split.thinking_start, split.thinking_end, thinking, split.closed)
        if not grows or shown != self._thinking_shown:  # the answer grows, the thinking stays
            self._thinking_shown = shown
            self.thinking.set_thinking(split.thinking(content), thinking, split.closed)

    def copy_text(self) -> str:
        """What Copy copies: a reply's answer, without its thinking (the thinking has its own
        Copy); a reply stopped while thinking, its thoughts."""
        split = self._split
        if not split.found:
            return self._source
        return split.answer(self._source).strip() or split.thinking(self._source)

    @Slot()
    def copy_to_clipboard(self) -> None:
        copy_with_feedback(self.copy_text(), self.copy_button)

    def plain_text(self) -> str:
        return self.content.plain_text()

    def set_footer(self, status: str, error: str | None, stats: dict[str, Any], model: str) -> None:
        if self.role == "assistant" and model:
            self.header.setText(model)
        if self.thinking is not None:
            seconds = stats.get("thinking_seconds") if stats else None
            self.thinking.set_seconds(float(seconds) if isinstance(seconds, int | float) else None)
        parts: list[str] = []
        if status == "error":
            message = html.escape(error or "The reply failed.")
            parts.append(f"<span style='color:#d04040'>⚠ {message}</span>")
        elif status == "interrupted":
            parts.append(
                "<i>Stopped</i>"
                if stats
                else "<i>Interrupted — the app closed before the reply finished</i>"
            )
        elif status == "streaming":
            parts.append("<i>Generating…</i>")
        if stats and stats.get("generated_tokens"):
            parts.append(
                f"{stats.get('tokens_per_second', 0):.1f} tokens/s · "
                f"{stats['generated_tokens']} tokens · "
                f"{short_duration(stats.get('time_to_first_token', 0))} to first token"
            )
            prompt_tokens = int(stats.get("prompt_tokens") or 0)
            if prompt_tokens:
                reused = prompt_tokens - int(stats.get("prompt_tokens_evaluated") or 0)
                parts.append(f"{reused:,} of {prompt_tokens:,} prompt tokens reused")
            if stats.get("messages_dropped"):
                parts.append(f"{stats['messages_dropped']} oldest messages did not fit the context")
            if stats.get("stop_reason") == "length":
                parts.append("reached the reply length limit")
            elif stats.get("stop_reason") == "context_full":
                parts.append("the context is full")
        text = "  ·  ".join(parts)
        if stats and stats.get("notice"):
            notice = html.escape(str(stats["notice"]))
            text += ("<br>" if text else "") + f"<span style='color:#c08000'>Note: {notice}</span>"
        self.footer.setText(text)
        self.footer.setVisible(bool(text))


def palette_is_dark(widget: QWidget) -> bool:
    return widget.palette().color(QPalette.ColorRole.Window).lightness() < 128


class ChatView(QScrollArea):
    prompt_requested = Signal(int)  # a reply's Prompt button: its message id
    action_requested = Signal(str, int)  # a message's action (MessageActions.requested)
    edit_submitted = Signal(int, str)  # a user message's id, its new text

    def __init__(self, model: MessageListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._model = model
        self._first_shown = 0
        self._widgets: list[MessageWidget] = []
        self._renderer = MarkdownRenderer(dark=palette_is_dark(self))
        self._stick_to_bottom = True
        self._busy = False  # a reply streams (in any chat): nothing may change the conversation

        self._body = QWidget()
        self._body.setObjectName("chatBody")
        self._layout = QVBoxLayout(self._body)
        self._layout.setContentsMargins(24, 16, 24, 16)
        self._layout.setSpacing(10)
        self._more = QPushButton("Show earlier messages")
        self._more.clicked.connect(self._show_more)
        self._layout.addWidget(self._more, 0, Qt.AlignmentFlag.AlignHCenter)
        self._empty = QLabel()
        self._empty.setObjectName("emptyChat")
        self._empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._empty.setWordWrap(True)
        self._layout.addWidget(self._empty)
        self._layout.addStretch(1)
        self.setWidget(self._body)

        model.modelReset.connect(self._rebuild)
        model.rowsInserted.connect(self._rows_inserted)
        model.dataChanged.connect(self._data_changed)
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range_changed)
        self._rebuild()

    def changeEvent(self, event: QEvent) -> None:
        # The theme changed: code blocks are coloured when rendered, so render again.
        if event.type() == QEvent.Type.PaletteChange:
            dark = palette_is_dark(self)
            if dark != self._renderer.dark:
                self._renderer = MarkdownRenderer(dark=dark)
                self._rebuild()
        super().changeEvent(event)

    def set_empty_text(self, text: str) -> None:
        self._empty.setText(text)
        self._empty.setVisible(self._model.rowCount() == 0 and bool(text))

    def message_widgets(self) -> list[MessageWidget]:
        return list(self._widgets)

    def _make(self, row: int) -> MessageWidget:
        idx = self._model.index(row)
        w = MessageWidget(idx.data(MessageRole.Role), self._renderer)
        w.message_id = idx.data(MessageRole.Id)
        w.prompt_requested.connect(self.prompt_requested)
        w.action_requested.connect(self.action_requested)
        w.edit_submitted.connect(self.edit_submitted)
        self._fill(w, row)
        return w

    def set_busy(self, busy: bool) -> None:
        """Whether a reply is streaming: the actions that change a conversation wait for it."""
        self._busy = busy
        for i, w in enumerate(self._widgets):
            self._fill_actions(w, self._first_shown + i)

    def widget_for(self, message_id: int) -> MessageWidget | None:
        """The widget showing ``message_id``, loading earlier pages if it is in one."""
        row = self._model.row_of(message_id)
        if row < 0:
            return None
        while row < self._first_shown:
            self._show_more()
        return self._widgets[row - self._first_shown]

    def scroll_to(self, widget: QWidget) -> None:
        self._stick_to_bottom = False
        self.ensureWidgetVisible(widget, 0, 40)

    def _fill_actions(self, w: MessageWidget, row: int) -> None:
        idx = self._model.index(row)
        status = idx.data(MessageRole.Status)
        last = row == self._model.rowCount() - 1
        w.action_bar.set_siblings(idx.data(MessageRole.Siblings))
        w.action_bar.set_state(
            has_text=bool(idx.data(MessageRole.Content)),
            streaming=status == "streaming",
            busy=self._busy,
            can_continue=last and can_continue(self._model.message(row)),
        )

    def _fill(self, w: MessageWidget, row: int, roles: list[int] | None = None) -> None:
        idx = self._model.index(row)
        if not roles or MessageRole.Content in roles or MessageRole.Status in roles:
            streaming = idx.data(MessageRole.Status) == "streaming"
            w.set_content(idx.data(MessageRole.Content), streaming)
        if not roles or set(roles) - {MessageRole.Content}:
            w.set_footer(
                idx.data(MessageRole.Status),
                idx.data(MessageRole.Error),
                idx.data(MessageRole.Stats) or {},
                idx.data(MessageRole.Model) or "",
            )
            self._fill_actions(w, row)

    @Slot()
    def _rebuild(self) -> None:
        for w in self._widgets:
            self._layout.removeWidget(w)
            w.deleteLater()
        self._widgets = []
        rows = self._model.rowCount()
        self._first_shown = max(0, rows - PAGE)
        for row in range(self._first_shown, rows):
            w = self._make(row)
            self._layout.insertWidget(self._layout.count() - 1, w)
            self._widgets.append(w)
        self._more.setVisible(self._first_shown > 0)
        self._empty.setVisible(rows == 0 and bool(self._empty.text()))
        self._stick_to_bottom = True

    @Slot()
    def _show_more(self) -> None:
        start = max(0, self._first_shown - PAGE)
        new = [self._make(row) for row in range(start, self._first_shown)]
        for i, w in enumerate(new):
            self._layout.insertWidget(2 + i, w)  # after the button and the empty label
        self._widgets[:0] = new
        self._first_shown = start
        self._more.setVisible(start > 0)
        self._stick_to_bottom = False

    @Slot(QModelIndex, int, int)
    def _rows_inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        for row in range(first, last + 1):
            w = self._make(row)
            pos = row - self._first_shown
            self._layout.insertWidget(2 + pos, w)
            self._widgets.insert(pos, w)
        if first - 1 >= self._first_shown:  # no longer the last: it cannot be continued now
            self._fill_actions(self._widgets[first - 1 - self._first_shown], first - 1)
        self._empty.hide()
        self._stick_to_bottom = True

    def _data_changed(
        self,
        top: QModelIndex | QPersistentModelIndex,
        bottom: QModelIndex | QPersistentModelIndex,
        roles: list[int],
    ) -> None:
        for row in range(max(top.row(), self._first_shown), bottom.row() + 1):
            self._fill(self._widgets[row - self._first_shown], row, list(roles))

    @Slot(int)
    def _on_scrolled(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._stick_to_bottom = value >= bar.maximum() - 8

    @Slot(int, int)
    def _on_range_changed(self, _lo: int, hi: int) -> None:
        if self._stick_to_bottom:
            self.verticalScrollBar().setValue(hi)

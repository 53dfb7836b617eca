"""What can be done to one message of the chat: its versions ("‹ 2/3 ›"), edit, regenerate,
continue and delete, and the box a user message is edited in."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chats.records import Siblings


def _tool_button(text: str, tip: str, name: str) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.setAccessibleName(name)
    b.setAutoRaise(True)
    b.setFocusPolicy(Qt.FocusPolicy.TabFocus)
    return b


class MessageActions(QWidget):
    """A message's action buttons; ``requested`` says which was pressed.

    Actions: ``"select"`` (with the version to show), ``"edit"``, ``"regenerate"``,
    ``"continue"`` and ``"delete"`` (with the message's own id).
    """

    requested = Signal(str, int)  # action, message id

    def __init__(self, role: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.message_id = 0
        self._siblings: Siblings | None = None
        self.previous_button = _tool_button("‹", "Show the previous version", "Previous version")
        self.previous_button.clicked.connect(self._previous)
        self.position = QLabel()
        self.position.setObjectName("versionPosition")
        self.next_button = _tool_button("›", "Show the next version", "Next version")
        self.next_button.clicked.connect(self._next)
        if role == "user":
            self.edit_button = _tool_button(
                "Edit", "Edit this message and send it again (the old version is kept)", "Edit"
            )
            self.edit_button.clicked.connect(self._edit)
        else:
            self.regenerate_button = _tool_button(
                "Regenerate",
                "Write this reply again (the old one is kept as a version)",
                "Regenerate",
            )
            self.regenerate_button.clicked.connect(self._regenerate)
            self.continue_button = _tool_button(
                "Continue", "Let the model go on where this reply stopped", "Continue"
            )
            self.continue_button.clicked.connect(self._continue)
            self.continue_button.hide()
        self.delete_button = _tool_button(
            "Delete", "Delete this message and everything after it in this version", "Delete"
        )
        self.delete_button.clicked.connect(self._delete)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        for w in (self.previous_button, self.position, self.next_button):
            layout.addWidget(w)
        layout.addSpacing(6)
        for w in self._changers():
            layout.addWidget(w)
        self.set_siblings(None)

    def _changers(self) -> list[QToolButton]:
        """The buttons that change the conversation (off while a reply streams)."""
        if self.role == "user":
            return [self.edit_button, self.delete_button]
        return [self.continue_button, self.regenerate_button, self.delete_button]

    def set_siblings(self, siblings: Siblings | None) -> None:
        """Show "‹ position/count ›" where the message has other versions."""
        self._siblings = siblings
        many = siblings is not None and siblings.count > 1
        for w in (self.previous_button, self.position, self.next_button):
            w.setVisible(many)
        if siblings is not None and many:
            self.position.setText(f"{siblings.position}/{siblings.count}")
            self.position.setAccessibleName(f"Version {siblings.position} of {siblings.count}")
            self.previous_button.setEnabled(siblings.previous is not None)
            self.next_button.setEnabled(siblings.next is not None)

    def set_state(self, *, has_text: bool, streaming: bool, busy: bool, can_continue: bool) -> None:
        """Which actions make sense now: nothing changes the conversation while a reply
        streams (``busy``); a streaming message cannot be acted on at all."""
        for w in self._changers():
            w.setEnabled(not busy)
        self.delete_button.setVisible(not streaming)
        if self.role == "user":
            self.edit_button.setVisible(has_text)
        else:
            self.regenerate_button.setVisible(not streaming)
            self.continue_button.setVisible(can_continue and not streaming)
        for w in (self.previous_button, self.next_button):
            w.setEnabled(
                not busy
                and self._siblings is not None
                and (self._siblings.previous if w is self.previous_button else self._siblings.next)
                is not None
            )

    @Slot()
    def _previous(self) -> None:
        if self._siblings is not None and self._siblings.previous is not None:
            self.requested.emit("select", self._siblings.previous)

    @Slot()
    def _next(self) -> None:
        if self._siblings is not None and self._siblings.next is not None:
            self.requested.emit("select", self._siblings.next)

    @Slot()
    def _edit(self) -> None:
        self.requested.emit("edit", self.message_id)

    @Slot()
    def _regenerate(self) -> None:
        self.requested.emit("regenerate", self.message_id)

    @Slot()
    def _continue(self) -> None:
        self.requested.emit("continue", self.message_id)

    @Slot()
    def _delete(self) -> None:
        self.requested.emit("delete", self.message_id)


class _EditBox(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line, Esc cancels."""

    submitted = Signal()
    cancelled = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.submitted.emit()
            return
        if key == Qt.Key.Key_Escape:
            self.cancelled.emit()
            return
        super().keyPressEvent(event)


class MessageEditor(QWidget):
    """Where a user message is edited: its text, Send (a new version, replied to) and Cancel."""

    submitted = Signal(str)
    cancelled = Signal()

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.box = _EditBox()
        self.box.setAccessibleName("Edit message")
        self.box.setTabChangesFocus(True)
        self.box.setPlainText(text)
        self.box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        lines = max(2, min(12, text.count("\n") + 2))
        self.box.setFixedHeight(lines * self.box.fontMetrics().lineSpacing() + 16)
        self.box.submitted.connect(self._submit)
        self.box.cancelled.connect(self.cancelled)
        self.send_button = QPushButton("Send")
        self.send_button.setToolTip("Send the edited message (Enter); the old version is kept")
        self.send_button.clicked.connect(self._submit)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Keep the message as it was (Esc)")
        self.cancel_button.clicked.connect(self.cancelled)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.box)
        layout.addLayout(buttons)

    def start(self) -> None:
        """Focus the box with the cursor at the end of the text."""
        self.box.setFocus()
        self.box.moveCursor(self.box.textCursor().MoveOperation.End)

    @Slot()
    def _submit(self) -> None:
        text = self.box.toPlainText().strip()
        if text:
            self.submitted.emit(text)

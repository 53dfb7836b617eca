"""A notice under a list: what just happened, perhaps an action (Undo), and a close button."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

NOTICE_SECONDS = 10.0


class NoticeBar(QFrame):
    """A line under the list: what just happened, perhaps an action (Undo), and a close button.
    It goes by itself after a while. A ``{name}`` in the text (a chat's title) is cut to keep a
    notice with an action on one line."""

    action_triggered = Signal()
    ended = Signal()  # closed, or its time ran out (not when its action was taken)

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noticeBar")
        self.setAccessibleName(name)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setMinimumWidth(1)
        self._template = ""
        self._name = ""
        self.action = QToolButton()
        self.action.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.action.clicked.connect(self._on_action)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setAccessibleName(f"Dismiss the {name.lower()}")
        self.close_button.setToolTip("Dismiss")
        self.close_button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.close_button.clicked.connect(self.dismiss)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 4, 4)
        row.addWidget(self.text, 1)
        row.addWidget(self.action)
        row.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.dismiss)
        self.hide()

    def show_notice(
        self, text: str, action: str = "", seconds: float = NOTICE_SECONDS, name: str = ""
    ) -> None:
        """Show ``text`` (and a button ``action``) for ``seconds`` (0: until closed); a
        ``{name}`` in ``text`` stands for ``name``, cut to fit."""
        whole = text.replace("{name}", name)
        self._template, self._name = text, name
        self.text.setWordWrap("{name}" not in text)
        self.text.setAccessibleName(whole)
        self.text.setToolTip(whole if "{name}" in text else "")
        self.action.setText(action)
        self.action.setAccessibleName(f"{action}: {whole}" if action else "")
        self.action.setVisible(bool(action))
        self._fit()
        self.timer.stop()
        if seconds > 0:
            self.timer.start(int(seconds * 1000))
        self.show()

    def message(self) -> str:
        """What the bar says, whole."""
        return self.text.accessibleName()

    def _fit(self) -> None:
        if "{name}" not in self._template:
            self.text.setText(self._template)
            return
        metrics = self.text.fontMetrics()
        room = self.text.width() - metrics.horizontalAdvance(self._template.replace("{name}", ""))
        name = metrics.elidedText(self._name, Qt.TextElideMode.ElideRight, max(room - 4, 24))
        self.text.setText(self._template.replace("{name}", name))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    @Slot()
    def dismiss(self) -> None:
        if self.isHidden():
            return
        self.timer.stop()
        self.hide()
        self.ended.emit()

    @Slot()
    def _on_action(self) -> None:
        self.timer.stop()
        self.hide()
        self.action_triggered.emit()

"""A reply's prompt: the exact text the model read for it, and which chat template made it."""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.engine.templates import template_said
from app.engine.types import LoadedModel


class PromptDialog(QDialog):
    def __init__(
        self, text: str, loaded: LoadedModel | None, dropped: int, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Prompt of this reply")
        self.resize(720, 520)
        about = "What the model read, as its chat template wrote it"
        if loaded is not None:
            about += f": {loaded.name}, {template_said(loaded)}."
        if dropped:
            about += (
                f" The {dropped} oldest messages did not fit the context and were left out of "
                "the prompt the reply was made from."
            )
        self.about = QLabel(about)
        self.about.setWordWrap(True)
        self.text = QPlainTextEdit(text)
        self.text.setReadOnly(True)
        self.text.setAccessibleName("Prompt text")
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = QPushButton("Copy")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(text))
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.about)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)

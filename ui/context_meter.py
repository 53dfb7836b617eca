"""How much of the model's context the conversation shown fills."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from app.chats.store import Message
from app.engine.types import LoadedModel

NEAR_FULL = 0.85  # of the context: the meter warns from here on


class ContextMeter(QLabel):
    """ "Context: used / length tokens", where used is what the next reply starts from: the last
    reply's prompt and its own words. Warns near the limit; hidden with no model to count for."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("contextMeter")
        self.setAccessibleName("Context used")
        self.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.setToolTip(
            "How much of the model's context this conversation fills: the next reply reads all "
            "of it, and its own words need room too. Past the limit, the oldest messages are "
            "left out (the system prompt is kept), or the reply is refused: Settings → Replies."
        )
        self.hide()

    def show_usage(
        self, model: LoadedModel | None, messages: list[Message], drop_oldest: bool = True
    ) -> None:
        """Count for ``model`` (None: the chat's model is not the one loaded) and ``messages``,
        the conversation shown; ``drop_oldest``: what happens past the limit (Settings)."""
        if model is None or not model.context_length:
            self.hide()
            return
        used = 0
        for m in reversed(messages):
            if m.role == "assistant" and m.stats.get("prompt_tokens"):
                used = int(m.stats["prompt_tokens"]) + int(m.stats.get("generated_tokens") or 0)
                break
        near = used >= NEAR_FULL * model.context_length
        text = f"Context: {used:,} / {model.context_length:,} tokens"
        if near:
            text += (
                " — near the limit: the oldest messages will be left out"
                if drop_oldest
                else " — near the limit: start a new chat soon"
            )
        self.setText(text)
        self.setProperty("near", near)
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()

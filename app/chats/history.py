"""Turning stored messages into what an engine reads."""

from __future__ import annotations

from app.chats.store import Conversation, Message, Status
from app.engine.types import ChatMessage, GenerationStats


def engine_messages(conversation: Conversation, messages: list[Message]) -> list[ChatMessage]:
    """The system prompt and every user/assistant message with content, in order.

    Failed replies are left out; interrupted ones stay, as the user saw them.
    """
    out = opening_messages(conversation.system_prompt)
    for m in messages:
        if m.role == "system" or m.status == "error" or not m.content:
            continue
        out.append({"role": m.role, "content": m.content})
    return out


def opening_messages(system_prompt: str) -> list[ChatMessage]:
    """What a conversation starts with before its first message: the system prompt, if any."""
    return [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []


def reply_status(stats: GenerationStats) -> Status:
    """How a reply that ended without an error is saved: stopped ones are ``interrupted``."""
    return "interrupted" if stats.stop_reason == "cancelled" else "complete"


def title_from(text: str, limit: int = 48) -> str:
    """A conversation title from its first message."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"

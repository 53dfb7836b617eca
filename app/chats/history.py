"""Turning stored messages into what an engine reads."""

from __future__ import annotations

from app.chats.store import Conversation, Message, Status
from app.chats.titles import title_from
from app.engine.types import ChatMessage, GenerationStats

__all__ = [
    "can_continue",
    "engine_messages",
    "opening_messages",
    "reply_status",
    "title_from",
]


def engine_messages(conversation: Conversation, messages: list[Message]) -> list[ChatMessage]:
    """The system prompt and every user/assistant message with content, in order.

    ``messages`` is one path of the conversation (``ChatStore.messages``: the shown one, or
    ``ChatStore.path_to``): other branches never reach the engine.

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


def can_continue(message: Message) -> bool:
    """Whether a reply can be continued (``Turn.continue_reply``): it has text and stopped on
    the token limit, or was stopped by the user. (It must also be the last of its branch.)"""
    if message.role != "assistant" or not message.content:
        return False
    return message.status == "interrupted" or (
        message.status == "complete" and message.stats.get("stop_reason") == "length"
    )

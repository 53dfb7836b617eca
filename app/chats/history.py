"""Turning stored messages into what an engine reads."""

from __future__ import annotations

from app.chats.store import Conversation, Message, Status
from app.chats.titles import title_from
from app.engine.types import ChatMessage, GenerationStats
from app.markdown_blocks import split_thinking

__all__ = [
    "can_continue",
    "engine_messages",
    "opening_messages",
    "reply_for_templates",
    "reply_status",
    "title_from",
]


def engine_messages(conversation: Conversation, messages: list[Message]) -> list[ChatMessage]:
    """The system prompt and every user/assistant message with content, in order.

    ``messages`` is one path of the conversation (``ChatStore.messages``: the shown one, or
    ``ChatStore.path_to``): other branches never reach the engine.

    Failed replies are left out; interrupted ones stay, as the user saw them. A reply's
    thinking is passed in ``<think>`` markers (``reply_for_templates``), which the chat template
    gets apart from the answer and keeps or leaves out.
    """
    out = opening_messages(conversation.system_prompt)
    for m in messages:
        if m.role == "system" or m.status == "error" or not m.content:
            continue
        content = reply_for_templates(m.content) if m.role == "assistant" else m.content
        out.append({"role": m.role, "content": content})
    return out


def reply_for_templates(reply: str) -> str:
    """A reply with its thinking, whatever markers the model wrote (gpt-oss' analysis channel,
    Seed-OSS' ``<seed:think>``, a ``<think>`` the template opened, thinking cut short), as
    ``<think>…</think>`` and the answer: the form ``ChatTemplate`` takes the thinking from, and
    OpenAI-compatible servers too. gpt-oss' template refuses its channel markers in a message."""
    split = split_thinking(reply)
    if not split.found:
        return reply
    return f"<think>\n{split.thinking(reply)}\n</think>\n\n{split.answer(reply)}"


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

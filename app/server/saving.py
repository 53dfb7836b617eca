"""API requests saved as chats, when Settings → Local server says so (off by default).

A request is saved through the same reply lifecycle as the window's chats (``Turn``): the user's
message, then the reply as it streams, ended once. A client resends the whole conversation with
every request; one whose messages are a conversation saved before plus a new message continues
that conversation instead of starting another (remembered while the server runs).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from app.chats.history import title_from
from app.chats.store import ChatStore
from app.chats.turn import Turn
from app.engine.types import ChatMessage


def _key(messages: Sequence[ChatMessage]) -> tuple[tuple[str, str], ...]:
    return tuple((m["role"], m["content"]) for m in messages)


class SavedRequests:
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._conversations: dict[tuple[tuple[str, str], ...], int] = {}
        self._lock = threading.Lock()

    def start(
        self, messages: list[ChatMessage], model_path: str, model_name: str
    ) -> tuple[Turn, ChatStore] | None:
        """The saved turn for a chat request ending with a user message (None otherwise), and
        the store it writes to (this thread's own; close it after the turn)."""
        if not messages or messages[-1]["role"] != "user":
            return None
        *before, last = messages
        store = ChatStore(self.db_path)
        with self._lock:
            known = self._conversations.pop(_key(before), None)
        conversation = store.conversation(known) if known is not None else None
        if conversation is None:
            system = "\n\n".join(m["content"] for m in before if m["role"] == "system")
            conversation = store.create_conversation(
                title=title_from(f"API: {last['content']}"),
                model=model_path,
                system_prompt=system,
            )
            for m in before:
                if m["role"] == "user":
                    store.add_message(conversation.id, "user", m["content"])
                elif m["role"] == "assistant":
                    store.add_message(conversation.id, "assistant", m["content"])
        turn = Turn.start(
            store,
            conversation,
            last["content"],
            model_path=model_path,
            model_name=model_name,
            system_prompt=conversation.system_prompt,
        )
        return turn, store

    def ended(self, turn: Turn, messages: list[ChatMessage]) -> None:
        """The turn is over: a request that resends it with one more message continues it."""
        reply: ChatMessage = {"role": "assistant", "content": turn.text}
        with self._lock:
            self._conversations[_key([*messages, reply])] = turn.conversation.id

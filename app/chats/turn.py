"""One exchange with a model, recorded as it happens: the reply lifecycle every front end uses.

The window, the command line and (later) the API server each start a ``Turn`` and feed it what
the engine streams; none of them writes messages itself. A turn saves the user's message (and
the conversation, on its first message), builds what the engine reads from the store, records the
streaming reply (saved at most once a ``SAVE_INTERVAL``, so a crash loses at most that much), and
ends it once: finished with its stats, stopped, or failed with the reason.
"""

from __future__ import annotations

import contextlib
import time

from app.chats.history import engine_messages, reply_status, title_from
from app.chats.store import ChatStore, ChatStoreError, Conversation, Message, Status
from app.engine.types import ChatMessage, GenerationStats

SAVE_INTERVAL = 1.0


class Turn:
    def __init__(
        self,
        store: ChatStore,
        conversation: Conversation,
        user: Message,
        reply: Message,
        history: list[ChatMessage],
        created: bool,
    ) -> None:
        self.store = store
        self.conversation = conversation
        self.user = user
        self.reply = reply
        self.history = history  # what the engine reads for this reply
        self.created = created  # the conversation was saved with this turn's message
        self.status: Status = "streaming"
        self.stats: GenerationStats | None = None
        self.error: str | None = None
        self._parts: list[str] = []
        self.save_error = ""  # why the reply as shown is not all saved ("" when it is)
        self._dirty = False
        self._saved_at = time.monotonic()

    @classmethod
    def start(
        cls,
        store: ChatStore,
        conversation: Conversation | None,
        text: str,
        *,
        model_path: str,
        model_name: str,
        system_prompt: str,
    ) -> Turn:
        """Save the user's message ``text`` (and, for a new chat, the conversation: titled from
        it, with this model and system prompt) and an empty streaming reply after it."""
        created = conversation is None
        if conversation is None:
            conversation = store.create_conversation(
                title=title_from(text), model=model_path, system_prompt=system_prompt
            )
        user: Message | None = None
        try:
            user = store.add_message(conversation.id, "user", text)
            history = engine_messages(conversation, store.messages(conversation.id))
            reply = store.add_message(conversation.id, "assistant", "", "streaming", model_name)
        except ChatStoreError:  # a full disk, say: no half-saved turn or empty chat is left
            with contextlib.suppress(ChatStoreError):
                if created:
                    store.delete_conversation(conversation.id)
                elif user is not None:
                    store.delete_messages_from(user.id)
            raise
        return cls(store, conversation, user, reply, history, created)

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def ended(self) -> bool:
        return self.status != "streaming"

    def record(self, delta: str) -> None:
        """Add streamed text; saved when the last save is ``SAVE_INTERVAL`` old."""
        self._parts.append(delta)
        self._dirty = True
        if time.monotonic() - self._saved_at >= SAVE_INTERVAL:
            self.save()

    def save(self) -> None:
        """Save the text so far, if anything came since the last save. When the store cannot
        (a full disk), the text stays here, ``save_error`` says why, and the next save tries
        again: the reply goes on streaming."""
        if self._dirty and not self.ended:
            try:
                self.store.update_message(self.reply.id, content=self.text)
            except ChatStoreError as e:
                self.save_error = str(e)
            else:
                self._dirty = False
                self.save_error = ""
        self._saved_at = time.monotonic()

    def finish(self, stats: GenerationStats) -> Status:
        """The engine ended the reply (complete, or ``interrupted`` when it was stopped)."""
        return self._end(reply_status(stats), stats, None)

    def stop(self, stats: GenerationStats | None = None) -> Status:
        """The reply was cut short on this side (Ctrl+C, a reader that left)."""
        return self._end("interrupted", stats, None)

    def fail(self, error: str) -> Status:
        return self._end("error", None, error)

    def _end(self, status: Status, stats: GenerationStats | None, error: str | None) -> Status:
        if self.ended:
            return self.status
        self.status, self.stats, self.error = status, stats, error
        try:
            self.store.update_message(
                self.reply.id,
                content=self.text,
                status=status,
                error=error,
                stats=stats.to_json() if stats else {},
            )
        except ChatStoreError as e:  # shown whole all the same; its front end says it is unsaved
            self.save_error = str(e)
        else:
            self.save_error = ""
        self._dirty = False
        return status

    def saved_reply(self) -> Message:
        """The reply as it is now saved (or would be, once ended)."""
        return Message(
            self.reply.id,
            self.reply.conversation_id,
            self.reply.parent_id,
            "assistant",
            self.text,
            self.status,
            self.error,
            self.reply.model,
            self.stats.to_json() if self.stats else {},
            self.reply.created_at,
        )

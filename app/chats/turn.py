"""One exchange with a model, recorded as it happens: the reply lifecycle every front end uses.

The window, the command line and the API server each start a ``Turn`` and feed it what the
engine streams; none of them writes messages itself. A turn saves the user's message (and the
conversation, on its first message), builds what the engine reads from the store, records the
streaming reply (saved at most once a ``SAVE_INTERVAL``, so a crash loses at most that much), and
ends it once: finished with its stats, stopped, or failed with the reason.

Four ways to start one, all ending the same way:

- ``Turn.start``: a new message at the end of the shown path;
- ``Turn.regenerate``: another reply to a user message, beside the earlier ones;
- ``Turn.edit``: a new version of a user message (beside the old one), and a reply to it;
- ``Turn.continue_reply``: more of a reply that stopped (the token limit), in the same message.

``reply_for(engine, turn, ...)`` asks the engine for what the turn needs (a chat reply, or for a
continuation the text after the reply so far).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import replace
from typing import Any

from app.chats.chat_settings import ChatSettings
from app.chats.history import can_continue, engine_messages, reply_status, title_from
from app.chats.store import ChatStore, ChatStoreError, Conversation, Message, Status
from app.engine.types import NO_RULES, ChatMessage, Engine, GenerationStats, Reply, ReplyRules
from app.settings import Sampling

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
        continues: str = "",
    ) -> None:
        self.store = store
        self.conversation = conversation
        self.user = user  # the message replied to (for an edit, its new version)
        self.reply = reply
        self.history = history  # what the engine reads for this reply (before it)
        self.created = created  # the conversation was saved with this turn's message
        # The reply's text before this turn, which the engine continues ("" for a new reply).
        self.continues = continues
        self.status: Status = "streaming"
        self.stats: GenerationStats | None = None
        self.error: str | None = None
        self._parts: list[str] = []
        self.save_error = ""  # why the reply as shown is not all saved ("" when it is)
        self._dirty = False
        self._saved_at = time.monotonic()
        self._earlier_stats: dict[str, Any] = {}  # a continued reply's stats before it
        self._earlier_status: Status = "complete"  # ... and its status
        self._saved_status: Status = "streaming"

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
        settings: ChatSettings | None = None,
    ) -> Turn:
        """Save the user's message ``text`` (and, for a new chat, the conversation: titled from
        it, with this model, system prompt and ``settings``) and an empty streaming reply after
        it."""
        created = conversation is None
        if conversation is None:
            conversation = store.create_conversation(
                title=title_from(text),
                model=model_path,
                system_prompt=system_prompt,
                sampling=settings.to_json() if settings and not settings.is_default else None,
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
                    store.delete_message(user.id)
            raise
        return cls(store, conversation, user, reply, history, created)

    @classmethod
    def regenerate(cls, store: ChatStore, message_id: int, *, model_name: str) -> Turn:
        """Another reply to the user message ``message_id`` — or, given a reply, to the user
        message it answered — saved beside the earlier replies (which stay, as branches) and
        shown. ``ValueError`` when there is no such user message."""
        user = _message(store, message_id)
        if user.role == "assistant" and user.parent_id is not None:
            user = _message(store, user.parent_id)
        if user.role != "user":
            raise ValueError(f"message {message_id} is not a user message or a reply to one")
        conversation = _conversation(store, user.conversation_id)
        history = engine_messages(conversation, store.path_to(user.id))
        reply = store.add_message(
            conversation.id, "assistant", "", "streaming", model_name, parent_id=user.id
        )
        return cls(store, conversation, user, reply, history, False)

    @classmethod
    def edit(cls, store: ChatStore, message_id: int, text: str, *, model_name: str) -> Turn:
        """A new version of the user message ``message_id`` with ``text``, beside the old one
        (which stays, with its replies, as a branch), and a reply to it; the new version is
        shown. ``ValueError`` when ``message_id`` is not a user message."""
        old = _message(store, message_id)
        if old.role != "user":
            raise ValueError(f"message {message_id} is not a user message")
        conversation = _conversation(store, old.conversation_id)
        user = store.add_message(conversation.id, "user", text, parent_id=old.parent_id)
        try:
            history = engine_messages(conversation, store.path_to(user.id))
            reply = store.add_message(
                conversation.id, "assistant", "", "streaming", model_name, parent_id=user.id
            )
        except ChatStoreError:
            with contextlib.suppress(ChatStoreError):
                store.delete_message(user.id)
                store.select(old.id)
            raise
        return cls(store, conversation, user, reply, history, False)

    @classmethod
    def continue_reply(cls, store: ChatStore, message_id: int) -> Turn:
        """More of the reply ``message_id`` (one that stopped on the token limit, or was
        stopped: ``history.can_continue``), appended to the same message. ``ValueError`` when it
        cannot be continued (it failed, is empty, is still streaming, or has messages after it).
        """
        old = _message(store, message_id)
        if not can_continue(old):
            raise ValueError("only a reply that stopped early can be continued")
        conversation = _conversation(store, old.conversation_id)
        before = store.path_to(message_id)[:-1]
        if not before:
            raise ValueError("a reply without a message before it cannot be continued")
        store.select(message_id)  # first: a failure here leaves the reply as it was
        reply = store.resume_message(message_id)
        turn = cls(
            store,
            conversation,
            before[-1],
            reply,
            engine_messages(conversation, before),
            False,
            continues=old.content,
        )
        turn._earlier_stats, turn._earlier_status = old.stats, old.status
        return turn

    @property
    def text(self) -> str:
        """The reply's whole text so far (for a continuation, with what it had before)."""
        return self.continues + "".join(self._parts)

    @property
    def new_text(self) -> str:
        """What this turn added to the reply."""
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
        if status == "error" and self.continues:
            # A continuation that failed leaves the reply as it was (or stopped, with what
            # came): its text stays in later history and can be continued again. The front
            # end shows ``error``.
            status = "interrupted" if self.new_text else self._earlier_status
            error = None
        self._saved_status = status
        try:
            self.store.update_message(
                self.reply.id,
                content=self.text,
                status=status,
                error=error,
                stats=self._stats_json(),
            )
        except ChatStoreError as e:  # shown whole all the same; its front end says it is unsaved
            self.save_error = str(e)
        else:
            self.save_error = ""
        self._dirty = False
        return self.status

    def saved_reply(self) -> Message:
        """The reply as it is now saved (or would be, once ended)."""
        return Message(
            self.reply.id,
            self.reply.conversation_id,
            self.reply.parent_id,
            "assistant",
            self.text,
            self._saved_status,
            self.error if self._saved_status == "error" else None,
            self.reply.model,
            self._stats_json(),
            self.reply.created_at,
        )

    def _stats_json(self) -> dict[str, Any]:
        """The reply's stats as saved: a continued reply counts the tokens and time of all its
        parts; the other figures are the last part's."""
        if self.stats is None:  # ended before the engine said anything: earlier figures stay
            return dict(self._earlier_stats)
        out = self.stats.to_json()
        if self._earlier_stats:
            for key in ("generated_tokens", "generation_seconds"):
                earlier = self._earlier_stats.get(key)
                if isinstance(earlier, int | float) and not isinstance(earlier, bool):
                    out[key] += earlier
            if out["generation_seconds"] > 0:
                out["tokens_per_second"] = out["generated_tokens"] / out["generation_seconds"]
        return out


def reply_for(
    engine: Engine,
    turn: Turn,
    sampling: Sampling,
    cancel: threading.Event,
    rules: ReplyRules = NO_RULES,
) -> Reply:
    """Ask ``engine`` for the reply ``turn`` records (see ``request_reply``). Called where the
    engine lives (its thread)."""
    return request_reply(engine, turn.history, turn.continues, sampling, cancel, rules)


def request_reply(
    engine: Engine,
    history: list[ChatMessage],
    continues: str,
    sampling: Sampling,
    cancel: threading.Event,
    rules: ReplyRules = NO_RULES,
) -> Reply:
    """A chat reply to ``history``; or, when it ``continues`` a reply, the plain-text completion
    of the prompt the chat template makes of the history followed by the reply so far (so the
    model goes on mid-sentence, and the prompt's KV cache is reused). For a front end whose
    engine lives on another thread, which takes a turn's ``history`` and ``continues`` there
    rather than the turn. Raises what ``Engine.chat``/``complete``/``format_prompt`` raise.
    """
    if not continues:
        return engine.chat(history, sampling, cancel, rules)
    prompt = engine.format_prompt(history, sampling.enable_thinking) + continues
    return engine.complete(prompt, sampling, cancel, replace(rules, ends_turn=True))


def _message(store: ChatStore, message_id: int) -> Message:
    message = store.message(message_id)
    if message is None:
        raise ValueError(f"no message {message_id}")
    return message


def _conversation(store: ChatStore, conversation_id: int) -> Conversation:
    conversation = store.conversation(conversation_id)
    assert conversation is not None  # messages go with their conversation (ON DELETE CASCADE)
    return conversation

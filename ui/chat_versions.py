"""The chat page's edits to a conversation's tree: its versions ("‹ 2/3 ›"), edit, regenerate,
continue, delete, and opening a conversation at one message (a search hit)."""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from PySide6.QtCore import SignalInstance, Slot
from PySide6.QtWidgets import QLabel, QMessageBox, QWidget

from app.chats.store import ChatStore, ChatStoreError, Conversation
from app.chats.turn import Turn
from ui.chat_view import ChatView
from ui.engine_controller import EngineController
from ui.item_models import MessageListModel

if TYPE_CHECKING:
    from ui.chat_page import _Stream


class ChatVersions:
    """Mixed into ``ChatPage``: what its messages' action buttons do. Each change waits for a
    reply that streams, goes through the store (and ``Turn`` where a reply follows), then shows
    the conversation's shown branch again."""

    store: ChatStore
    engine: EngineController
    conversation: Conversation | None
    messages: MessageListModel
    view: ChatView
    status: QLabel
    _stream: _Stream | None

    conversation_changed: SignalInstance

    if TYPE_CHECKING:  # ChatPage's own

        def current_model_path(self) -> str: ...
        def current_model_name(self) -> str: ...
        def open_conversation(self, conversation_id: int | None) -> None: ...
        def _begin(self, turn: Turn, path: str) -> None: ...
        def _prepare_next(self) -> None: ...
        def _update_context_meter(self) -> None: ...

    def _show_shown_branch(self) -> None:
        """Show the conversation's shown branch again (after it changed in the store)."""
        assert self.conversation is not None
        cid = self.conversation.id
        self.messages.set_messages(self.store.messages(cid), self.store.path_siblings(cid))
        self._update_context_meter()

    @Slot(str, int)
    def _on_message_action(self, action: str, message_id: int) -> None:
        if action == "select":
            self.show_version(message_id)
        elif action == "edit":
            w = self.view.widget_for(message_id)
            if w is not None:
                w.start_editing()
        elif action == "regenerate":
            self.regenerate(message_id)
        elif action == "continue":
            self.continue_reply(message_id)
        elif action == "delete":
            self.delete_message(message_id)

    def _may_change(self) -> bool:
        """Whether the conversation may change now: not while a reply streams."""
        if self.engine.generating:
            self.status.setText("Wait for the reply to end, or stop it (Esc).")
            return False
        return self.conversation is not None

    def show_version(self, message_id: int) -> None:
        """Show the version of a message ``message_id`` is (and what follows it there)."""
        if not self._may_change():
            return
        try:
            self.store.select(message_id)
        except ChatStoreError as e:
            self._say_error(str(e))
            return
        self._show_shown_branch()
        self._prepare_next()

    @Slot()
    def edit_last_message(self) -> None:
        """Up in an empty box: edit the last message the user sent in this chat."""
        for w in reversed(self.view.message_widgets()):
            if w.role == "user":
                w.start_editing()
                self.view.scroll_to(w)
                return

    @Slot(int, str)
    def edit_message(self, message_id: int, text: str) -> None:
        """Send ``text`` as a new version of the user message ``message_id`` (the old one and
        its replies stay, as a version) and stream the reply to it."""
        self._start_version(
            lambda: Turn.edit(self.store, message_id, text, model_name=self.current_model_name())
        )

    def regenerate(self, message_id: int) -> None:
        """Another reply in place of the reply ``message_id``, which stays as a version."""
        self._start_version(
            lambda: Turn.regenerate(self.store, message_id, model_name=self.current_model_name())
        )

    def continue_reply(self, message_id: int) -> None:
        """More of the reply ``message_id``, which stopped early, in the same message."""
        self._start_version(lambda: Turn.continue_reply(self.store, message_id))

    def _start_version(self, make: Callable[[], Turn]) -> None:
        if not self._may_change():
            return
        path = self.current_model_path()
        if not path:
            self._say_error("Add a model on the Models page first.")
            return
        try:
            turn = make()
        except (ChatStoreError, ValueError) as e:
            self._say_error(str(e))
            return
        self._show_shown_branch()
        self._begin(turn, path)

    def delete_message(self, message_id: int) -> None:
        """Delete a message and what follows it in its version, after asking where that is
        more than the message itself."""
        if not self._may_change():
            return
        row = self.messages.row_of(message_id)
        after = self.messages.rowCount() - row - 1 if row >= 0 else 0
        if after > 0:
            answer = QMessageBox.question(
                cast(QWidget, self),
                "Delete messages",
                f"Delete this message and the {after} after it? Other versions stay.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        try:
            self.store.delete_message(message_id)
        except ChatStoreError as e:
            self._say_error(str(e))
            return
        self._show_shown_branch()
        assert self.conversation is not None
        self.conversation_changed.emit(self.conversation.id)
        self._prepare_next()

    def reveal_message(self, message_id: int) -> None:
        """Open the conversation of ``message_id`` at that message (its version shown),
        scrolled to and highlighted for a moment: where a search hit leads."""
        message = self.store.message(message_id)
        if message is None:
            return
        if self._stream is None or self._stream.conversation_id != message.conversation_id:
            with contextlib.suppress(ChatStoreError):  # still opens, on the version shown
                self.store.select(message_id)
        self.open_conversation(message.conversation_id)
        w = self.view.widget_for(message_id)
        if w is not None:
            self.view.scroll_to(w)
            w.highlight()

    def _say_error(self, message: str) -> None:
        self.status.setText(f"<span style='color:#d04040'>{html.escape(message)}</span>")

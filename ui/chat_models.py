"""The chat page's model: the picker (local models and connections'), which model the shown
chat uses, and what the engine says as it loads it."""

from __future__ import annotations

import contextlib
import html
from pathlib import Path
from typing import TYPE_CHECKING, cast

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QComboBox, QLabel

from app.chats.chat_settings import ChatSettings
from app.chats.store import ChatStore, ChatStoreError, Conversation
from app.context import AppContext
from app.engine.routing import parse_remote_path
from app.engine.types import LoadedModel, LoadParams
from app.library import LibraryEntry
from ui.conversation_settings import ConversationSettingsDialog
from ui.engine_controller import EngineController


class ChatModels:
    """Mixed into ``ChatPage``: the picker is the one owner of the shown chat's model (the
    Models page's Load and a download's Chat button choose through ``choose_model``)."""

    ctx: AppContext
    store: ChatStore
    engine: EngineController
    conversation: Conversation | None
    picker: QComboBox
    status: QLabel
    chat_settings: ConversationSettingsDialog
    _models: list[LibraryEntry]
    _remote: list[tuple[str, str]]
    _library_known: bool
    _wanted: str
    _send_when_ready: bool
    _loaded_info: LoadedModel | None

    if TYPE_CHECKING:  # ChatPage's own

        def send(self) -> None: ...
        def _update_empty_text(self) -> None: ...
        def _update_context_meter(self) -> None: ...
        def _prepare_next(self) -> None: ...

    def set_models(self, models: list[LibraryEntry]) -> None:
        current = self.current_model_path()
        self._models = [m for m in models if m.usable]
        self._library_known = True
        self.picker.clear()
        for m in self._models:
            self.picker.addItem(m.name, str(m.path))
        if self._models and self._remote:
            self.picker.insertSeparator(self.picker.count())
        for label, path in self._remote:
            self.picker.addItem(label, path)
        if not self._models and not self._remote:
            self.picker.addItem("No models — add one on the Models page", "")
        wanted = (
            current
            or (self.conversation.model if self.conversation else "")
            or self.ctx.settings.last_model
        )
        i = self.picker.findData(wanted) if wanted else -1
        if i < 0:
            default = self.ctx.default_model(self._models)
            i = self.picker.findData(str(default.path)) if default else 0
        self.picker.setCurrentIndex(max(i, 0))
        self._wanted = ""
        self._update_empty_text()
        if (
            self.current_model_path()
            and not self.engine.loaded_path
            and not self.engine.loading_path
        ):
            self.load_current_model()
        if self._send_when_ready:
            self._send_when_ready = False
            self.send()

    def set_remote_models(self, models: list[tuple[str, str]]) -> None:
        """The models of connections (Settings → Connections), listed after the library's."""
        if models != self._remote:
            self._remote = list(models)
            self.set_models(self._models)

    def current_model_path(self) -> str:
        """The model of the chat shown: the picker's, or one chosen before the picker lists it."""
        return self._wanted or cast(str, self.picker.currentData() or "")

    def current_model_name(self) -> str:
        if self._wanted:
            return Path(self._wanted).stem
        return self.picker.currentText() if self.current_model_path() else ""

    def load_current_model(self) -> None:
        """Have the engine hold the shown chat's model; while a reply streams (perhaps in
        another chat) it waits for the reply's end."""
        path = self.current_model_path()
        if path and not self.engine.generating:
            self.engine.load(path, self._load_params(path))

    def _own_settings(self) -> ChatSettings:
        """The shown chat's own settings (Chat settings; a new chat's are a draft until sent)."""
        if self.conversation is None:
            return self.chat_settings.draft.settings
        return self.store.chat_settings(self.conversation.id)

    def _load_params(self, path: str = "", keep: bool = True) -> LoadParams:
        """How the shown chat's model loads: the app's settings, with the chat's own context
        length where it has one, and "Automatic" values worked out for the model and the free
        memory now (kept while the model is loaded, unless ``keep`` is off)."""
        path = path or self.current_model_path()
        engine = self.engine
        held = self._loaded_info
        return self.ctx.load_params(
            path,
            context_length=self._own_settings().context_length,
            replacing=held if held is not None and held.path == engine.loaded_path else None,
            keep=keep and path in (engine.loaded_path, engine.loading_path),
        )

    def reload_model(self) -> None:
        """Load the model the engine holds again, with the settings as they are now (automatic
        values worked out afresh)."""
        path = self.engine.loaded_path or self.engine.loading_path
        if path:
            self.engine.reload(self._load_params(path, keep=False))

    def choose_model(self, path: str) -> None:
        """Use the model at ``path`` for the chat shown and for new chats. The one way a model is
        chosen: the picker, the Models page's Load, a finished download's Chat button."""
        i = self.picker.findData(path)
        if i >= 0:
            self.picker.setCurrentIndex(i)
            self._wanted = ""
        else:
            self._wanted = path  # listed once the library scan under way answers
        self.ctx.settings.last_model = path
        self.ctx.save_settings()
        if self.conversation is not None:
            with contextlib.suppress(ChatStoreError):  # the chat keeps its old model, that is all
                self.store.update_conversation(self.conversation.id, model=path)
        self._update_empty_text()
        self.load_current_model()

    @Slot(int)
    def _on_model_chosen(self, index: int) -> None:
        path = self.picker.itemData(index)
        if path:
            self.choose_model(path)

    @Slot(str)
    def _on_loading(self, path: str) -> None:
        self.status.setText("Loading model…")

    @Slot(LoadedModel)
    def _on_loaded(self, info: LoadedModel) -> None:
        self._loaded_info = info
        remote = parse_remote_path(info.path)
        if remote:
            text = f"Ready · on {html.escape(remote[0])} (Settings → Connections)"
        else:
            text = f"Ready · context {info.context_length:,} tokens"
        fit = self.ctx.last_fit
        fit = fit if fit is not None and fit.path == info.path else None
        if fit is not None and fit.context_auto and fit.context_length == info.context_length:
            text += " (auto)"
        if info.gpu_layers or (fit is not None and fit.gpu_layers_auto):
            text += f" · {_layers_on_gpu(info.gpu_layers, fit.layers if fit else 0)}"
            text += " (auto)" if fit is not None and fit.gpu_layers_auto else ""
        self.status.setToolTip(fit.explanation if fit is not None else "")
        if info.safe_cpu:
            text += " · safe CPU mode"
        if info.notice:
            text += f"<br><span style='color:#c08000'>{html.escape(info.notice)}</span>"
        self.status.setText(text)
        self._update_context_meter()
        self._prepare_next()

    @Slot(str, str)
    def _on_load_failed(self, path: str, message: str) -> None:
        self.status.setText(
            f"<span style='color:#d04040'>Could not load the model: {html.escape(message)}</span>"
        )

    @Slot()
    def _on_unloaded(self) -> None:
        self.status.setText("No model loaded — it loads when you send a message.")


def _layers_on_gpu(on_gpu: int, layers: int) -> str:
    """ "12 of 32 layers on GPU"; the output head counts as one more (llama.cpp's n_gpu_layers)."""
    if not layers:
        return f"{on_gpu} layers on GPU"
    return f"{min(on_gpu, layers)} of {layers} layers on GPU"

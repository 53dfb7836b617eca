"""Thread glue for the engine: one long-lived QThread owns the engine and every llama.cpp call.

The GUI talks to ``EngineController``; it forwards requests to ``EngineWorker`` through queued
signals, stamps each with a request id, and drops results of requests that are no longer current.
Stop sets a ``threading.Event`` the engine checks between tokens and during prompt evaluation.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.chats.turn import request_reply
from app.engine.types import (
    ChatMessage,
    Engine,
    EngineError,
    GenerationStats,
    LoadedModel,
    LoadParams,
    coalesce,
)
from app.settings import Sampling

log = logging.getLogger(__name__)
# Token deltas are coalesced to at most ~30 updates a second, once: here, unless the engine paced
# them already (an engine process sends at most 25 a second, see Reply.paced). Each
# update renders the reply again, CPU time taken from llama.cpp when every core generates.
EMIT_INTERVAL = 1 / 30
# Every controller ever made, so tests can fail when one leaves its thread running.
live_controllers: weakref.WeakSet[EngineController] = weakref.WeakSet()


class EngineWorker(QObject):
    loaded = Signal(int, LoadedModel)  # request id, the model
    load_failed = Signal(int, str)
    delta = Signal(int, str)
    finished = Signal(int, GenerationStats)  # request id, the reply's stats
    failed = Signal(int, str)
    unloaded = Signal(int)
    prompt_formatted = Signal(int, str)  # request id, the prompt text
    prompt_failed = Signal(int, str)
    title_written = Signal(int, str)  # request id, what the model wrote

    def __init__(self, engine_factory: Callable[[], Engine]) -> None:
        super().__init__()
        self._factory = engine_factory
        self._engine: Engine | None = None
        self._load_error = ""

    @property
    def engine(self) -> Engine | None:
        """The engine, once made (read from other threads only for its thread-safe methods)."""
        return self._engine

    def _get_engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._factory()
        return self._engine

    @Slot(int, str, object, object)
    def load(self, request_id: int, path: str, params: LoadParams, cancel: threading.Event) -> None:
        try:
            engine = self._get_engine()
            info = engine.load(path, params, cancel)
        except EngineError as e:
            self._load_error = str(e)
            self.load_failed.emit(request_id, str(e))
        except Exception as e:
            log.exception("loading %s failed", path)
            self._load_error = f"Loading failed unexpectedly: {e}"
            self.load_failed.emit(request_id, self._load_error)
        else:
            self._load_error = ""
            self.loaded.emit(request_id, info)

    @Slot(int, object, object, object, str)
    def generate(
        self,
        request_id: int,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
        continues: str = "",
    ) -> None:
        engine = self._get_engine()
        if engine.loaded is None:
            self.failed.emit(request_id, self._load_error or "No model is loaded.")
            return
        try:
            reply = request_reply(engine, messages, continues, sampling, cancel)
            for text in reply if reply.paced else coalesce(reply, EMIT_INTERVAL):
                self.delta.emit(request_id, text)
            self.finished.emit(request_id, reply.stats)
        except EngineError as e:
            self.failed.emit(request_id, str(e))
        except Exception as e:
            log.exception("generation failed")
            self.failed.emit(request_id, f"The engine failed unexpectedly: {e}")

    @Slot(int, object, object, object)
    def write_title(
        self,
        request_id: int,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
    ) -> None:
        """A short reply written for a conversation's title: said only when it ran to its end
        (a reply the user asked for in the meantime cancels it)."""
        engine = self._engine
        if engine is None or engine.loaded is None or cancel.is_set():
            return
        try:
            reply = engine.chat(messages, sampling, cancel)
            text = "".join(reply)
        except Exception:  # only a nicer title: the first words stay
            log.exception("writing a title failed")
            return
        if not cancel.is_set() and reply.stats.stop_reason != "cancelled":
            self.title_written.emit(request_id, text)

    @Slot(object)
    def prepare(self, messages: list[ChatMessage]) -> None:
        engine = self._engine
        if engine is None or engine.loaded is None:
            return
        try:
            engine.prepare(messages)
        except Exception:  # only a speed-up: the next chat works without it
            log.exception("preparing the next prompt failed")

    @Slot(int, object, bool)
    def format_prompt(
        self, request_id: int, messages: list[ChatMessage], enable_thinking: bool = True
    ) -> None:
        engine = self._engine
        try:
            if engine is None or engine.loaded is None:
                raise EngineError("No model is loaded.")
            text = engine.format_prompt(messages, enable_thinking)
            self.prompt_formatted.emit(request_id, text)
        except EngineError as e:
            self.prompt_failed.emit(request_id, str(e))
        except Exception as e:
            log.exception("formatting a prompt failed")
            self.prompt_failed.emit(request_id, f"The engine failed unexpectedly: {e}")

    @Slot(int)
    def unload(self, request_id: int) -> None:
        if self._engine is not None:
            self._engine.unload()
        self.unloaded.emit(request_id)

    @Slot()
    def close(self) -> None:
        """Free the model and, for an engine in its own process, end that process."""
        if self._engine is not None:
            self._engine.close()


class EngineController(QObject):
    """The GUI thread's handle on the engine thread."""

    model_loading = Signal(str)  # path
    model_loaded = Signal(LoadedModel)
    model_load_failed = Signal(str, str)  # path, message
    model_unloaded = Signal()
    reply_delta = Signal(str)
    reply_finished = Signal(GenerationStats)
    reply_failed = Signal(str)
    busy_changed = Signal(bool)
    prompt_ready = Signal(str)  # the text asked for with format_prompt
    prompt_failed = Signal(str)
    title_ready = Signal(int, str)  # conversation id, the title the model wrote for it

    _request_load = Signal(int, str, object, object)  # request id, path, LoadParams, cancel
    # id, messages, Sampling, cancel, the reply so far when it is continued ("" for a new one)
    _request_generate = Signal(int, object, object, object, str)
    _request_prepare = Signal(object)  # messages
    _request_title = Signal(int, object, object, object)  # id, messages, Sampling, cancel
    _request_format = Signal(int, object, bool)  # request id, messages, enable_thinking
    _request_unload = Signal(int)
    _request_close = Signal()

    def __init__(self, engine_factory: Callable[[], Engine], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("hearth-engine")
        self._worker = EngineWorker(engine_factory)
        self._worker.moveToThread(self._thread)
        self._request_load.connect(self._worker.load)
        self._request_generate.connect(self._worker.generate)
        self._request_prepare.connect(self._worker.prepare)
        self._request_title.connect(self._worker.write_title)
        self._worker.title_written.connect(self._on_title)
        self._request_format.connect(self._worker.format_prompt)
        self._worker.prompt_formatted.connect(self._on_prompt)
        self._worker.prompt_failed.connect(self._on_prompt_failed)
        self._request_unload.connect(self._worker.unload)
        self._request_close.connect(self._worker.close)
        self._worker.loaded.connect(self._on_loaded)
        self._worker.load_failed.connect(self._on_load_failed)
        self._worker.delta.connect(self._on_delta)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._worker.unloaded.connect(self._on_unloaded)
        self._thread.start()
        live_controllers.add(self)
        self._next_id = 0
        self._load_id = -1
        self._generate_id = -1
        self._format_id = -1
        self._load_cancel = threading.Event()
        self._generate_cancel = threading.Event()
        self._params: LoadParams | None = None  # of the model loaded, or loading
        self._title_cancel = threading.Event()
        self._titles: dict[int, int] = {}  # title request id: its conversation
        self.loaded_path = ""
        self.loading_path = ""
        self.generating = False

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def load(self, path: str, params: LoadParams) -> None:
        """Load ``path`` with ``params``, unless it is already loaded or loading with them (a
        chat with a context length of its own loads the model again)."""
        if path in (self.loaded_path, self.loading_path) and params == self._params:
            return
        self._params = params
        self._load_cancel.set()  # a newer choice supersedes a load still under way
        self._load_cancel = threading.Event()
        self._load_id = self._new_id()
        self.loading_path = path
        self.model_loading.emit(path)
        self._request_load.emit(self._load_id, path, params, self._load_cancel)

    def reload(self, params: LoadParams) -> None:
        path = self.loaded_path or self.loading_path
        if path:
            self.loaded_path = self.loading_path = ""
            self.load(path, params)

    def unload(self) -> None:
        self._load_cancel.set()
        self.loading_path = ""
        self._request_unload.emit(self._new_id())

    def generate(
        self, messages: list[ChatMessage], sampling: Sampling, continues: str = ""
    ) -> None:
        """A reply to ``messages``; with ``continues`` (a reply that stopped early), more of
        that reply instead."""
        self._title_cancel.set()  # a title being written gives way to what the user asked for
        self._generate_cancel = threading.Event()
        self._generate_id = self._new_id()
        self._set_busy(True)
        self._request_generate.emit(
            self._generate_id, messages, sampling, self._generate_cancel, continues
        )

    def write_title(
        self, conversation_id: int, messages: list[ChatMessage], sampling: Sampling
    ) -> None:
        """Have the loaded model write a title for ``conversation_id`` from ``messages``
        (``app.chats.titles.title_request``); ``title_ready`` answers, unless a reply asked for
        in the meantime cancelled it."""
        if not self.loaded_path or self.loading_path:
            return
        self._title_cancel = threading.Event()
        request_id = self._new_id()
        self._titles[request_id] = conversation_id
        self._request_title.emit(request_id, list(messages), sampling, self._title_cancel)

    @Slot(int, str)
    def _on_title(self, request_id: int, text: str) -> None:
        conversation_id = self._titles.pop(request_id, None)
        if conversation_id is not None:
            self.title_ready.emit(conversation_id, text)

    def prepare(self, messages: list[ChatMessage]) -> None:
        """Let the loaded model get ready for the next reply while the user types: with
        ``messages`` ending in the user's draft, the prompt for it; otherwise the template's text
        up to the next message. Skipped while busy."""
        if self.loaded_path and not self.loading_path and not self.generating:
            self._request_prepare.emit(list(messages))

    def format_prompt(self, messages: list[ChatMessage], enable_thinking: bool = True) -> None:
        """Ask for the text the loaded model would read for ``messages`` (its template
        applied, with ``enable_thinking`` as the chat's replies have it); ``prompt_ready`` or
        ``prompt_failed`` answers. Waits for a reply under way."""
        self._format_id = self._new_id()
        self._request_format.emit(self._format_id, list(messages), enable_thinking)

    @Slot(int, str)
    def _on_prompt(self, request_id: int, text: str) -> None:
        if request_id == self._format_id:
            self.prompt_ready.emit(text)

    @Slot(int, str)
    def _on_prompt_failed(self, request_id: int, message: str) -> None:
        if request_id == self._format_id:
            self.prompt_failed.emit(message)

    def stop(self) -> None:
        self._generate_cancel.set()
        # The engine is told at once, from this thread (Engine.interrupt may be called from any).
        engine = self._worker.engine
        if engine is not None:
            engine.interrupt()

    @property
    def running(self) -> bool:
        return self._thread.isRunning()

    def shutdown(self) -> None:
        """Stop whatever runs, free the model, end the thread (called when the app closes)."""
        self._generate_cancel.set()
        self._load_cancel.set()
        self._request_close.emit()
        self._thread.quit()
        self._thread.wait()

    def _set_busy(self, busy: bool) -> None:
        if busy != self.generating:
            self.generating = busy
            self.busy_changed.emit(busy)

    @Slot(int, LoadedModel)
    def _on_loaded(self, request_id: int, info: LoadedModel) -> None:
        if request_id != self._load_id:
            return
        self.loaded_path, self.loading_path = self.loading_path, ""
        self.model_loaded.emit(info)

    @Slot(int, str)
    def _on_load_failed(self, request_id: int, message: str) -> None:
        if request_id != self._load_id:
            return
        path, self.loading_path, self.loaded_path = self.loading_path, "", ""
        self.model_load_failed.emit(path, message)

    @Slot(int)
    def _on_unloaded(self, _request_id: int) -> None:
        if not self.loading_path:
            self.loaded_path = ""
            self.model_unloaded.emit()

    @Slot(int, str)
    def _on_delta(self, request_id: int, text: str) -> None:
        if request_id == self._generate_id:
            self.reply_delta.emit(text)

    @Slot(int, GenerationStats)
    def _on_finished(self, request_id: int, stats: GenerationStats) -> None:
        if request_id == self._generate_id:
            self._set_busy(False)
            self.reply_finished.emit(stats)

    @Slot(int, str)
    def _on_failed(self, request_id: int, message: str) -> None:
        if request_id == self._generate_id:
            self._set_busy(False)
            self.reply_failed.emit(message)

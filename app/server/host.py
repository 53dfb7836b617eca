"""What the API server serves: the library's models by stable ids, on one seat of the engine.

Requests take turns: one reply at a time on the server's seat (and, in the window, between the
server and the window's chats: app/engine/shared.py). The model a request names is loaded when
its turn comes; a model nobody asked for in ``idle_seconds`` is unloaded (unless the window uses
it). A request whose client leaves, or that waits for its turn, ends at once with ``cancel``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from app.chats.turn import Turn
from app.engine.shared import Seat
from app.engine.types import EngineError, GenerationStats, LoadParams, Reply
from app.library import LibraryEntry
from app.server.openai_api import ApiError, Request
from app.server.saving import SavedRequests

log = logging.getLogger(__name__)
LIBRARY_FRESH_SECONDS = 5.0  # a request within this time of the last scan uses its list
WAIT_POLL = 0.05


def model_ids(entries: list[LibraryEntry]) -> dict[str, LibraryEntry]:
    """Each usable model under a readable id that stays the same while its file does: the
    model's name in lower case with spaces as dashes, and "-2", "-3"… for files of the same name
    (in path order)."""
    ids: dict[str, LibraryEntry] = {}
    for entry in sorted((e for e in entries if e.usable), key=lambda e: str(e.path)):
        base = re.sub(r"\s+", "-", entry.name.strip().lower()) or "model"
        name, n = base, 1
        while name in ids:
            n += 1
            name = f"{base}-{n}"
        ids[name] = entry
    return ids


@dataclass
class Served:
    """What the server has done, for the window's status line."""

    requests: int = 0
    active: int = 0
    last_model: str = ""


class ModelHost:
    def __init__(
        self,
        seat: Seat,
        scan: Callable[[], list[LibraryEntry]],
        load_params: Callable[[str], LoadParams],
        idle_seconds: float = 15 * 60,
        saving: SavedRequests | None = None,
    ) -> None:
        self.seat = seat
        self.saving = saving  # requests saved as chats (a setting; off by default)
        self._scan = scan
        self._load_params = load_params
        self.idle_seconds = idle_seconds
        self._ids: dict[str, LibraryEntry] = {}
        self._scanned_at = float("-inf")
        self._scan_lock = threading.Lock()
        self._one_at_a_time = threading.Lock()
        self.served = Served()
        self._last_used = time.monotonic()
        self._closed = threading.Event()
        self._cancels: set[threading.Event] = set()  # one per reply under way
        self._cancels_lock = threading.Lock()
        self._idle_watch = threading.Thread(target=self._unload_when_idle, daemon=True)
        self._idle_watch.start()

    def models(self, fresh: bool = False) -> dict[str, LibraryEntry]:
        with self._scan_lock:
            if fresh or time.monotonic() - self._scanned_at > LIBRARY_FRESH_SECONDS:
                self._ids = model_ids(self._scan())
                self._scanned_at = time.monotonic()
            return self._ids

    def find(self, model: str) -> tuple[str, LibraryEntry]:
        ids = self.models()
        if model not in ids:
            ids = self.models(fresh=True)
        wanted = model.lower()
        for name, entry in ids.items():
            if name == wanted or str(entry.path) == model:
                return name, entry
        raise ApiError(
            404,
            f"The model '{model}' does not exist (GET /v1/models lists the ids)",
            code="model_not_found",
            param="model",
        )

    def reply(
        self, request: Request, model: tuple[str, LibraryEntry], cancel: threading.Event
    ) -> Iterator[str | GenerationStats]:
        """The reply's text pieces, then its stats, from ``model`` (``find``'s answer for the
        request); waits for its turn (ending at once without a word when ``cancel`` is set
        meanwhile). ``stop_replies`` sets ``cancel``."""
        with self._cancels_lock:
            self._cancels.add(cancel)
        try:
            if not self._closed.is_set():  # after the add: stop_replies sets closed first
                yield from self._reply_in_turn(request, model, cancel)
        finally:
            with self._cancels_lock:
                self._cancels.discard(cancel)

    def _reply_in_turn(
        self, request: Request, model: tuple[str, LibraryEntry], cancel: threading.Event
    ) -> Iterator[str | GenerationStats]:
        name, entry = model
        while not self._one_at_a_time.acquire(timeout=WAIT_POLL):
            if cancel.is_set() or self._closed.is_set():
                return
        self.served.active += 1
        try:
            loaded = self.seat.loaded
            if loaded is None or loaded.path != str(entry.path):
                params = self._load_params(str(entry.path))  # its automatic fit, if so set
                log.info("API: loading %s", entry.path.name)
                self.seat.load(str(entry.path), params, cancel)
            self.served.last_model = name
            if request.prompt is not None:
                reply = self.seat.complete(request.prompt, request.sampling, cancel, request.rules)
            else:
                reply = self.seat.chat(request.messages, request.sampling, cancel, request.rules)
            saving, saved = self.saving, None
            if saving is not None and request.prompt is None:
                saved = saving.start(request.messages, str(entry.path), name)
            try:
                yield from self._recorded(reply, saved[0] if saved else None)
            finally:
                reply.close()
                if saving is not None and saved is not None:
                    turn, store = saved
                    if not turn.ended:
                        turn.stop(reply.stats)
                    saving.ended(turn, request.messages)
                    store.close()
            yield reply.stats
        finally:
            self.served.requests += 1
            self.served.active -= 1
            self._last_used = time.monotonic()
            self._one_at_a_time.release()

    @staticmethod
    def _recorded(reply: Reply, turn: Turn | None) -> Iterator[str]:
        """The reply's text, saved as it comes when the request is saved as a chat."""
        if turn is None:
            yield from reply
            return
        try:
            for text in reply:
                turn.record(text)
                yield text
        except EngineError as e:
            turn.fail(str(e))
            raise
        turn.finish(reply.stats)

    def context_length(self) -> int:
        """The context of the model loaded, or what one would get without a file to fit."""
        loaded = self.seat.loaded
        return loaded.context_length if loaded is not None else self._load_params("").context_length

    def _unload_when_idle(self) -> None:
        while not self._closed.wait(1.0):
            if not self.idle_seconds or self.seat.loaded is None:
                continue
            if time.monotonic() - self._last_used < self.idle_seconds:
                continue
            if self._one_at_a_time.acquire(blocking=False):
                try:
                    if self.seat.loaded is not None:
                        log.info("API: unloading the model after %.0f s idle", self.idle_seconds)
                        self.seat.unload()
                finally:
                    self._one_at_a_time.release()

    def stop_replies(self) -> None:
        """The server is stopping: end the replies under way within a token, start no more."""
        self._closed.set()
        with self._cancels_lock:
            for cancel in self._cancels:
                cancel.set()

    def close(self) -> None:
        self.stop_replies()
        self._idle_watch.join(2)
        self.seat.close()


def model_card(name: str, entry: LibraryEntry) -> dict[str, object]:
    try:
        created = int(entry.path.stat().st_mtime)
    except OSError:
        created = 0
    return {"id": name, "object": "model", "created": created, "owned_by": "hearth"}

"""One engine shared in turns: the window and the API server use one model in memory.

Each front end gets a ``Seat``, which is an Engine of its own: it loads the model it wants and
replies with it. The seats take turns on the engine underneath, one reply (or load) at a time, so
a reply is never cut off by another front end's request: that request waits for its turn. A seat
whose turn comes while the engine holds another seat's model loads its own first (the model
switches; with one model wanted by both, nothing is reloaded).

``interrupt`` on a seat stops only that seat's work; the engine underneath is closed with the last
seat.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from app.engine.types import (
    NO_RULES,
    ChatMessage,
    Engine,
    EngineError,
    GenerationStats,
    LoadedModel,
    LoadParams,
    Reply,
    ReplyRules,
)
from app.settings import Sampling

WAIT_POLL = 0.05  # how often a seat waiting for its turn looks whether it was cancelled


class SharedEngine:
    def __init__(self, engine: Engine, paced: bool = False) -> None:
        self.engine = engine
        self.paced = paced  # the engine's replies come coalesced already (see Reply.paced)
        self._turn = threading.Lock()
        self._holder: Seat | None = None
        self._in_engine: tuple[str, LoadParams] | None = None  # what the engine last loaded
        self._seats: list[Seat] = []
        self._closed = False

    def seat(self, name: str) -> Seat:
        seat = Seat(self, name)
        with self._turn:
            self._seats.append(seat)
        return seat

    @property
    def busy_with(self) -> str:
        """The name of the seat whose turn it is ("" when the engine is free)."""
        holder = self._holder
        return holder.name if holder is not None else ""

    def _take_turn(self, seat: Seat, cancel: threading.Event | None) -> bool:
        while not self._turn.acquire(timeout=WAIT_POLL):
            if (cancel is not None and cancel.is_set()) or seat._stop_waiting.is_set():
                return False
        self._holder = seat
        return True

    def _end_turn(self) -> None:
        self._holder = None
        self._turn.release()

    def _wanted_by_others(self, seat: Seat, path: str) -> bool:
        return any(s is not seat and s._wanted and s._wanted[0] == path for s in self._seats)

    def _leave(self, seat: Seat) -> None:
        """A seat is closed: free its model unless another seat wants it; the last closes all."""
        with self._turn:
            if seat in self._seats:
                self._seats.remove(seat)
            if self._seats or self._closed:
                self._release_unwanted(seat)
                return
            self._closed = True
            self.engine.close()

    def _release_unwanted(self, seat: Seat) -> None:
        loaded = self.engine.loaded
        if loaded is not None and not self._wanted_by_others(seat, loaded.path):
            self.engine.unload()
            self._in_engine = None


class Seat:
    """One front end's Engine on a SharedEngine (see the module's docstring)."""

    def __init__(self, shared: SharedEngine, name: str) -> None:
        self.shared = shared
        self.name = name
        self._wanted: tuple[str, LoadParams] | None = None
        self._info: LoadedModel | None = None
        self._stop_waiting = threading.Event()

    @property
    def loaded(self) -> LoadedModel | None:
        return self._info

    def _ensure_loaded(self, cancel: threading.Event | None) -> None:
        """With the turn taken: the engine holds this seat's model (loading it if another
        seat's is there)."""
        if self._wanted is None:
            raise EngineError("No model is loaded.")
        shared, (path, params) = self.shared, self._wanted
        if shared.engine.loaded is None or shared._in_engine != self._wanted:
            shared._in_engine = None
            self._info = shared.engine.load(path, params, cancel)
            shared._in_engine = self._wanted
        elif self._info is None:
            self._info = shared.engine.loaded

    def load(
        self, path: str, params: LoadParams, cancel: threading.Event | None = None
    ) -> LoadedModel:
        self._stop_waiting.clear()
        if not self.shared._take_turn(self, cancel):
            raise EngineError("Loading was cancelled.")
        try:
            self._wanted, self._info = (path, params), None
            self._ensure_loaded(cancel)
        except BaseException:
            self._wanted = None
            raise
        finally:
            self.shared._end_turn()
        assert self._info is not None
        return self._info

    def unload(self) -> None:
        """This seat wants no model now: the engine's is freed unless another seat wants it.
        Never waits: when another seat has its turn, that seat is using the engine's model."""
        self._wanted, self._info = None, None
        shared = self.shared
        if shared._turn.acquire(blocking=False):
            try:
                shared._release_unwanted(self)
            finally:
                shared._turn.release()

    def chat(
        self,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        return self._reply(lambda e: e.chat(messages, sampling, cancel, rules), cancel)

    def complete(
        self,
        prompt: str,
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        return self._reply(lambda e: e.complete(prompt, sampling, cancel, rules), cancel)

    def _reply(self, start: Callable[[Engine], Reply], cancel: threading.Event) -> Reply:
        if self._wanted is None:
            raise EngineError("No model is loaded.")
        self._stop_waiting.clear()
        stats = GenerationStats()
        return Reply(self._turn_of(start, cancel, stats), stats, paced=self.shared.paced)

    def _turn_of(
        self, start: Callable[[Engine], Reply], cancel: threading.Event, stats: GenerationStats
    ) -> Iterator[str]:
        """The reply, in this seat's turn: taken when reading starts, kept until it ends."""
        if not self.shared._take_turn(self, cancel):
            stats.stop_reason = "cancelled"
            return
        reply: Reply | None = None
        try:
            self._ensure_loaded(None)
            reply = start(self.shared.engine)
            yield from reply
        finally:
            if reply is not None:
                reply.close()
                stats.update_from(reply.stats)
            self.shared._end_turn()

    def format_prompt(self, messages: list[ChatMessage], enable_thinking: bool = True) -> str:
        if not self.shared._take_turn(self, None):
            raise EngineError("Stopped.")
        try:
            self._ensure_loaded(None)
            return self.shared.engine.format_prompt(messages, enable_thinking)
        finally:
            self.shared._end_turn()

    def prepare(self, messages: list[ChatMessage]) -> None:
        """Only when the engine is free and holds this seat's model: a speed-up never waits."""
        shared = self.shared
        if not shared._turn.acquire(blocking=False):
            return
        try:
            loaded = shared.engine.loaded
            if self._wanted is not None and loaded is not None and loaded.path == self._wanted[0]:
                shared.engine.prepare(messages)
        finally:
            shared._turn.release()

    def interrupt(self) -> None:
        self._stop_waiting.set()
        if self.shared._holder is self:
            self.shared.engine.interrupt()

    def close(self) -> None:
        self._wanted, self._info = None, None
        self._stop_waiting.set()
        self.shared._leave(self)

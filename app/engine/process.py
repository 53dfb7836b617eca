"""The llama.cpp engine in a child process, run on that process's main thread.

Measured here (SmolLM2, 2 cores, one process, 8 rotated rounds): the same engine generated 117.6
tokens/s called from a process's main thread but 87.8 from a plain thread and 91.5 from a QThread;
on a child process's main thread it made 120.5. The GUI needs its own main thread, so the engine
gets a process. A bonus: a crash in native code ends the child, not the app — the reply fails with
a plain message and the next request starts a fresh engine process.

``ProcessEngine`` implements the same interface as ``LlamaCppEngine``; one thread uses it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import threading
from collections.abc import Callable, Iterator
from dataclasses import fields
from multiprocessing.connection import Connection
from typing import Any

from app.engine.types import (
    ChatMessage,
    EngineError,
    GenerationStats,
    LoadedModel,
    LoadParams,
    Reply,
    coalesce,
)
from app.settings import Sampling

log = logging.getLogger(__name__)
SEND_INTERVAL = 1 / 25  # the chat view shows text 25 times a second (ui/engine_controller.py)
# How often the thread reading the pipe wakes while nothing comes, to see a cancel event set without
# interrupt() or a child that died.
POLL_SECONDS = 0.1
CRASHED = (
    "The engine stopped unexpectedly (a crash in llama.cpp); it restarts with your next message."
)


def _serve(conn: Connection, cancel: Any, log_file: str | None) -> None:
    """The child's main loop: one command at a time, replies on the same pipe."""
    if log_file:
        from pathlib import Path

        from app.logs import setup_logging

        setup_logging(Path(log_file))
    from app.engine.llama_cpp_engine import LlamaCppEngine

    engine = LlamaCppEngine()
    waiting: list[tuple[Any, ...]] = []  # a command that arrived while preparing
    while True:
        try:
            command, *args = waiting.pop() if waiting else conn.recv()
        except (EOFError, OSError):
            return
        try:
            if command == "load":
                path, params = args
                conn.send(("loaded", engine.load(path, params, cancel)))
            elif command == "unload":
                engine.unload()
                conn.send(("unloaded",))
            elif command == "chat":
                messages, sampling = args
                _stream_reply(conn, engine.chat(messages, sampling, cancel))
            elif command == "prepare":  # no answer: the parent does not wait for it
                engine.prepare(args[0], _preparation_stopper(conn, cancel, args[0], waiting))
            elif command == "quit":
                engine.unload()
                return
        except EngineError as e:
            if command == "prepare":  # only a speed-up; nobody waits for an answer
                log.info("preparing the next prompt failed: %s", e)
            else:
                conn.send(("error", str(e)))
        except Exception as e:  # keep serving; the parent shows the message
            log.exception("engine command %s failed", command)
            if command != "prepare":
                conn.send(("error", f"The engine failed unexpectedly: {e}"))


def _preparation_stopper(
    conn: Connection, cancel: Any, conversation: list[ChatMessage], waiting: list[tuple[Any, ...]]
) -> Callable[[], bool]:
    """When to stop preparing ``conversation``: once a command arrives (it is kept in
    ``waiting``), unless it is a chat that continues the conversation, which needs what is being
    evaluated (and is not stopped at once); anything else makes the preparation pointless."""
    wanted = False

    def stop() -> bool:
        nonlocal wanted
        try:
            if not waiting and conn.poll(0):
                waiting.append(conn.recv())
                wanted = continues(waiting[0], conversation)
        except (EOFError, OSError):  # the app is gone; the main loop sees it next
            return True
        return bool(waiting) and (not wanted or cancel.is_set())

    return stop


def continues(command: tuple[Any, ...], conversation: list[ChatMessage]) -> bool:
    """Whether a command is a chat that continues what is being prepared: its messages start
    with ``conversation``, where a last user message (a draft) may have grown since."""
    if command[0] != "chat":
        return False
    messages: list[ChatMessage] = command[1]
    if not conversation or conversation[-1]["role"] != "user":
        return messages[: len(conversation)] == conversation
    *settled, draft = conversation
    if len(messages) < len(conversation) or messages[: len(settled)] != settled:
        return False
    sent = messages[len(settled)]
    return sent["role"] == "user" and sent["content"].startswith(draft["content"])


def _stream_reply(conn: Connection, reply: Reply) -> None:
    """Send a reply's text at most SEND_INTERVAL apart: on a fast model the window's process then
    wakes 25 times a second instead of once per token (its CPU time is taken from llama.cpp's
    threads when every core generates)."""
    for text in coalesce(reply, SEND_INTERVAL):
        conn.send(("delta", text))
    conn.send(("done", reply.stats))


class ProcessEngine:
    def __init__(self, log_file: str | None = None) -> None:
        self._ctx = mp.get_context("spawn")  # no forked Qt or llama.cpp state in the child
        self._log_file = log_file
        self._proc: Any = None
        self._conn: Connection | None = None
        self._cancel: Any = None
        self._loaded: LoadedModel | None = None
        self._last_load: tuple[str, LoadParams] | None = None
        self._reload_after_crash = False

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def _ensure(self) -> Connection:
        if self._proc is None or not self._proc.is_alive():
            parent, child = self._ctx.Pipe()
            self._cancel = self._ctx.Event()
            self._proc = self._ctx.Process(
                target=_serve,
                args=(child, self._cancel, self._log_file),
                daemon=True,
                name="hearth-engine",
            )
            self._proc.start()
            child.close()
            self._conn = parent
        assert self._conn is not None
        return self._conn

    def _receive(self, cancel: threading.Event | None) -> tuple[Any, ...]:
        conn = self._conn
        assert conn is not None
        while True:
            # Checked before every message, not only while the pipe is empty: tokens keep coming.
            if cancel is not None and cancel.is_set() and not self._cancel.is_set():
                self._cancel.set()
            if conn.poll(POLL_SECONDS):  # Stop comes through interrupt(); this is the fallback
                break
            if not self._proc.is_alive() and not conn.poll(0):
                raise EOFError
        message: tuple[Any, ...] = conn.recv()
        return message

    def _crashed(self) -> EngineError:
        log.error(
            "the engine process ended (exit code %s)", self._proc.exitcode if self._proc else None
        )
        self._proc = None
        self._loaded = None
        self._reload_after_crash = self._last_load is not None
        return EngineError(CRASHED)

    def load(
        self, path: str, params: LoadParams, cancel: threading.Event | None = None
    ) -> LoadedModel:
        conn = self._ensure()
        self._cancel.clear()
        try:
            conn.send(("load", path, params))
            kind, *rest = self._receive(cancel)
        except (EOFError, OSError, BrokenPipeError):
            raise self._crashed() from None
        if kind == "error":
            self._loaded = None
            raise EngineError(rest[0])
        self._loaded = rest[0]
        self._last_load = (path, params)
        self._reload_after_crash = False
        return rest[0]  # type: ignore[no-any-return]

    def unload(self) -> None:
        if self._proc is None or not self._proc.is_alive() or self._conn is None:
            self._loaded = None
            return
        try:
            self._conn.send(("unload",))
            self._receive(None)
        except (EOFError, OSError):
            self._proc = None
        self._loaded = None

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive() and self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(("quit",))
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
        if self._conn is not None:
            self._conn.close()
        # Let the shared event's semaphore be freed now, not reported as leaked at exit.
        self._proc = self._conn = self._cancel = None
        self._loaded = None

    def interrupt(self) -> None:
        """Stop the reply or prompt in progress now; safe from any thread (the GUI's Stop).

        Tells the child directly, instead of waiting for the thread reading the pipe to notice
        the cancel event passed to ``chat``.
        """
        cancel = self._cancel
        if cancel is not None:
            cancel.set()

    def prepare(self, messages: list[ChatMessage]) -> None:
        """Ask the engine process to evaluate ahead what the next chat needs (see
        ``LlamaCppEngine.prepare``); returns at once, nothing is answered."""
        if self._loaded is None or self._conn is None or not self._proc.is_alive():
            return
        with contextlib.suppress(OSError):  # a crash shows with the next real command
            self._conn.send(("prepare", messages))

    def chat(
        self, messages: list[ChatMessage], sampling: Sampling, cancel: threading.Event
    ) -> Reply:
        if self._loaded is None and self._reload_after_crash and self._last_load is not None:
            self._reload_after_crash = False
            self.load(*self._last_load)  # what the crash message promised
        if self._loaded is None:
            raise EngineError("No model is loaded.")
        stats = GenerationStats()
        return Reply(self._stream(messages, sampling, cancel, stats), stats)

    def _stream(
        self,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
        stats: GenerationStats,
    ) -> Iterator[str]:
        if self._proc is None or not self._proc.is_alive() or self._conn is None:
            raise self._crashed()
        conn = self._conn
        self._cancel.clear()
        try:
            conn.send(("chat", messages, sampling))
            while True:
                kind, *rest = self._receive(cancel)
                if kind == "delta":
                    yield rest[0]
                elif kind == "done":
                    for f in fields(GenerationStats):
                        setattr(stats, f.name, getattr(rest[0], f.name))
                    return
                else:
                    raise EngineError(rest[0])
        except (EOFError, OSError):
            raise self._crashed() from None

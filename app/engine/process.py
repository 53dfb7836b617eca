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
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from app.engine import memory_check
from app.engine.cpu_safety import DOES_NOT_FIT, SafeModeMemory, is_cpu_fault, safe_mode_notice
from app.engine.crashed_models import CrashedModels
from app.engine.grammar import InvalidRequest
from app.engine.pipe import (
    Answer,
    Chat,
    Command,
    Complete,
    Delta,
    Done,
    Failed,
    FormatPrompt,
    Load,
    Loaded,
    Prepare,
    PromptText,
    Quit,
    Unload,
    Unloaded,
)
from app.engine.types import (
    NO_RULES,
    ChatMessage,
    EngineError,
    GenerationStats,
    LoadedModel,
    LoadParams,
    Reply,
    ReplyRules,
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
CRASHED_SWITCHING = (
    "The engine stopped unexpectedly (llama.cpp's CPU kernels crashed on this processor); it "
    "restarts in safe CPU mode with your next message."
)
# Exit codes of an engine process ended from outside (killed, out of memory): not the file's fault.
_ENDED_FROM_OUTSIDE = (
    {-int(signal.SIGKILL), -int(signal.SIGTERM)} if hasattr(signal, "SIGKILL") else set()
)


def _native_crash(exitcode: int | None) -> bool:
    """Whether the engine process died in native code: a signal other than a kill from outside
    (SIGABRT from a GGML_ASSERT, SIGSEGV…) or a Windows exception status."""
    if exitcode is None or exitcode in _ENDED_FROM_OUTSIDE:
        return False
    return exitcode < 0 or (exitcode & 0xFFFFFFFF) >= 0xC0000000


ABANDON_SECONDS = 5  # how long a reply nobody reads may take to stop before its process is ended


def _serve(conn: Connection, cancel: Any, log_file: str | None) -> None:
    """The child's main loop: one command at a time, replies on the same pipe."""
    # Ctrl+C in a terminal reaches the whole process group; the parent decides what it stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_file:
        from app.logs import setup_logging

        setup_logging(Path(log_file))
    from app.engine.llama_cpp_engine import LlamaCppEngine

    engine = LlamaCppEngine()
    waiting: list[Command] = []  # a command that arrived while preparing
    while True:
        try:
            command: Command = waiting.pop() if waiting else conn.recv()
        except (EOFError, OSError):
            return
        try:
            match command:
                case Load(path, params):
                    conn.send(Loaded(engine.load(path, params, cancel)))
                case Unload():
                    engine.unload()
                    conn.send(Unloaded())
                case Chat(messages, sampling, rules):
                    _stream_reply(conn, engine.chat(messages, sampling, cancel, rules))
                case Complete(prompt, sampling, rules):
                    _stream_reply(conn, engine.complete(prompt, sampling, cancel, rules))
                case FormatPrompt(messages, enable_thinking):
                    conn.send(PromptText(engine.format_prompt(messages, enable_thinking)))
                case Prepare(messages):  # no answer: the parent does not wait for it
                    engine.prepare(messages, _preparation_stopper(conn, cancel, messages, waiting))
                case Quit():
                    engine.unload()
                    return
        except (BrokenPipeError, ConnectionResetError):  # the app is gone (killed, say)
            return
        except EngineError as e:
            if isinstance(command, Prepare):  # only a speed-up; nobody waits for an answer
                log.info("preparing the next prompt failed: %s", e)
            else:
                conn.send(Failed(str(e), isinstance(e, InvalidRequest)))
        except Exception as e:  # keep serving; the parent shows the message
            log.exception("engine command %s failed", type(command).__name__)
            if not isinstance(command, Prepare):
                conn.send(Failed(f"The engine failed unexpectedly: {e}"))


def _preparation_stopper(
    conn: Connection, cancel: Any, conversation: list[ChatMessage], waiting: list[Command]
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


def continues(command: Command, conversation: list[ChatMessage]) -> bool:
    """Whether a command is a chat that continues what is being prepared: its messages start
    with ``conversation``, where a last user message (a draft) may have grown since."""
    if not isinstance(command, Chat):
        return False
    messages = command.messages
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
        conn.send(Delta(text))
    conn.send(Done(reply.stats))


class _EngineDied(Exception):
    """The engine process ended while a command was under way."""

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(exitcode)
        self.exitcode = exitcode


class ProcessEngine:
    """The engine in a child process; survives the child's crashes.

    When the child dies from a fault of llama.cpp's CPU kernels (an illegal instruction, say),
    the model is loaded again in safe CPU mode and the request retried once; if that works, the
    choice is remembered in ``safe_mode`` for this processor and llama.cpp build and the user is
    told once (``LoadedModel.notice`` or ``GenerationStats.notice``).
    """

    def __init__(
        self,
        log_file: str | None = None,
        safe_mode: SafeModeMemory | None = None,
        crashed: CrashedModels | None = None,
    ) -> None:
        self._ctx = mp.get_context("spawn")  # no forked Qt or llama.cpp state in the child
        self._log_file = log_file
        self._safe_mode = safe_mode
        self._crashed = crashed  # files whose loading ended the process: not loaded again
        self._proc: Any = None
        self._conn: Connection | None = None
        self._cancel: Any = None
        self._loaded: LoadedModel | None = None
        self._last_load: tuple[str, LoadParams] | None = None
        self._reload_after_crash = False
        # Safe CPU mode for the next load: engaged after a fault in the middle of a reply, and
        # remembered once a reply in it works.
        self._safe_pending = False
        self._notice_due = ""  # the safe-mode notice, until a reply or load has carried it

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

    def _receive(self, cancel: threading.Event | None) -> Answer:
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
        answer: Answer = conn.recv()
        return answer

    def _died(self) -> _EngineDied:
        """Forget the dead process and say how it ended."""
        exitcode = None
        if self._proc is not None:
            self._proc.join(2)  # the pipe closes a moment before the exit status is known
            exitcode = self._proc.exitcode
        log.error("the engine process ended (exit code %s)", exitcode)
        self._proc = None
        self._loaded = None
        self._reload_after_crash = self._last_load is not None
        return _EngineDied(exitcode)

    def _wants_safe(self, params: LoadParams) -> bool:
        return (
            params.safe_cpu
            or self._safe_pending
            or (self._safe_mode is not None and self._safe_mode.needed())
        )

    def _engage_safe_mode(self, exitcode: int | None) -> None:
        """Safe CPU mode worked where the fast kernels crashed: keep it, and say so once."""
        self._safe_pending = False
        self._notice_due = safe_mode_notice()
        if self._safe_mode is not None:
            self._safe_mode.remember(f"the engine process died with exit code {exitcode}")

    def _crash_message(self, died: _EngineDied, safe: bool) -> str:
        if safe and is_cpu_fault(died.exitcode):
            return DOES_NOT_FIT
        return CRASHED

    def _load_once(
        self, path: str, params: LoadParams, cancel: threading.Event | None
    ) -> LoadedModel:
        conn = self._ensure()
        self._cancel.clear()
        try:
            conn.send(Load(path, params))
            answer = self._receive(cancel)
        except (EOFError, OSError):
            raise self._died() from None
        if not isinstance(answer, Loaded):
            self._loaded = None
            raise EngineError(answer.message if isinstance(answer, Failed) else str(answer))
        self._loaded = answer.model
        self._reload_after_crash = False
        return answer.model

    def _load(self, path: str, params: LoadParams, cancel: threading.Event | None) -> LoadedModel:
        """Load, in safe CPU mode where it is known to be needed, or after the fast kernels
        crash while loading."""
        why = self._crashed.reason(path) if self._crashed is not None else None
        why = why or memory_check.refusal(path, params, self._loaded)  # before it swaps
        if why:
            raise EngineError(why)
        safe = self._wants_safe(params)
        try:
            info = self._load_once(path, replace(params, safe_cpu=safe), cancel)
            self._last_load = (path, params)
            return info
        except _EngineDied as died:
            if not _native_crash(died.exitcode):
                # Python's own failure in the child (exit 1: it could not start, say), or a kill
                # from outside: not the file's fault, nothing to remember about it.
                killed = died.exitcode in _ENDED_FROM_OUTSIDE
                raise EngineError(
                    f"The engine process was ended while loading {Path(path).name}"
                    + (
                        " (killed: out of memory?)."
                        if killed
                        else f" (exit code {died.exitcode}); "
                    )
                    + ("" if killed else "see engine.log in Hearth's log folder.")
                ) from None
            if not is_cpu_fault(died.exitcode):
                self._reload_after_crash = False  # the same file would crash it again
                message = (
                    f"llama.cpp crashed while loading {Path(path).name} (exit code "
                    f"{died.exitcode}): the file is damaged or needs a newer llama.cpp. Hearth "
                    "will not load it again unless the file changes."
                )
                if self._crashed is not None:
                    self._crashed.remember(path, message)
                raise EngineError(message) from None
            if safe:
                raise EngineError(self._crash_message(died, safe)) from None
            log.warning("llama.cpp faulted while loading; loading again in safe CPU mode")
            try:
                info = self._load_once(path, replace(params, safe_cpu=True), cancel)
            except _EngineDied as again:
                raise EngineError(self._crash_message(again, True)) from None
            self._last_load = (path, params)
            self._engage_safe_mode(died.exitcode)
            return info

    def load(
        self, path: str, params: LoadParams, cancel: threading.Event | None = None
    ) -> LoadedModel:
        info = self._load(path, params, cancel)
        if self._notice_due:
            notice = " ".join(x for x in (self._notice_due, info.notice) if x)
            self._notice_due = ""
            info = self._loaded = replace(info, notice=notice)
        return info

    def unload(self) -> None:
        if self._proc is None or not self._proc.is_alive() or self._conn is None:
            self._loaded = None
            return
        try:
            self._conn.send(Unload())
            self._receive(None)
        except (EOFError, OSError):
            self._proc = None
        self._loaded = None

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive() and self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(Quit())
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

    def format_prompt(self, messages: list[ChatMessage], enable_thinking: bool = True) -> str:
        if self._loaded is None or self._conn is None or not self._proc.is_alive():
            raise EngineError("No model is loaded.")
        try:
            self._conn.send(FormatPrompt(messages, enable_thinking))
            answer = self._receive(None)
        except (EOFError, OSError):
            raise EngineError(CRASHED) from None
        if isinstance(answer, PromptText):
            return answer.text
        raise EngineError(answer.message if isinstance(answer, Failed) else str(answer))

    def prepare(self, messages: list[ChatMessage]) -> None:
        """Ask the engine process to evaluate ahead what the next chat needs (see
        ``LlamaCppEngine.prepare``); returns at once, nothing is answered."""
        if self._loaded is None or self._conn is None or not self._proc.is_alive():
            return
        with contextlib.suppress(OSError):  # a crash shows with the next real command
            self._conn.send(Prepare(messages))

    def chat(
        self,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        return self._reply(Chat(messages, sampling, rules), cancel)

    def complete(
        self,
        prompt: str,
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        return self._reply(Complete(prompt, sampling, rules), cancel)

    def _reply(self, request: Chat | Complete, cancel: threading.Event) -> Reply:
        if self._loaded is None and self._reload_after_crash and self._last_load is not None:
            self._reload_after_crash = False
            self._load(*self._last_load, None)  # what the crash message promised
        if self._loaded is None:
            raise EngineError("No model is loaded.")
        stats = GenerationStats()
        return Reply(self._stream(request, cancel, stats), stats, paced=True)

    def _stream(
        self, request: Chat | Complete, cancel: threading.Event, stats: GenerationStats
    ) -> Iterator[str]:
        """The reply; when the fast CPU kernels crash before its first words, it is asked again
        in safe CPU mode."""
        assert self._last_load is not None
        safe = self._loaded is not None and self._loaded.safe_cpu
        shown = False
        first: Generator[str, None, None] = self._stream_once(request, cancel, stats)
        try:
            for text in first:
                shown = True
                yield text
        except _EngineDied as died:
            if safe or not is_cpu_fault(died.exitcode):
                raise EngineError(self._crash_message(died, safe)) from None
            if shown:  # the words already shown cannot be taken back: the next message retries
                self._safe_pending = True
                raise EngineError(CRASHED_SWITCHING) from None
            log.warning("llama.cpp faulted while replying; retrying in safe CPU mode")
            self._reload_after_crash = False
            try:
                self._load_once(
                    self._last_load[0], replace(self._last_load[1], safe_cpu=True), None
                )
                yield from self._stream_once(request, cancel, stats)
            except _EngineDied as again:
                raise EngineError(self._crash_message(again, True)) from None
            self._engage_safe_mode(died.exitcode)
        finally:
            first.close()  # a reader that leaves early stops the reply (see _stream_once)
        if safe and self._safe_pending:  # safe mode engaged after a fault mid-reply works
            self._engage_safe_mode(None)
        stats.notice = " ".join(n for n in (self._notice_due, stats.notice) if n)
        self._notice_due = ""

    def _stream_once(
        self, request: Chat | Complete, cancel: threading.Event, stats: GenerationStats
    ) -> Generator[str, None, None]:
        if self._proc is None or not self._proc.is_alive() or self._conn is None:
            raise self._died()
        conn = self._conn
        self._cancel.clear()
        finished = False
        try:
            conn.send(request)
            while True:
                answer = self._receive(cancel)
                if isinstance(answer, Delta):
                    yield answer.text
                    continue
                finished = True
                if isinstance(answer, Done):
                    stats.update_from(answer.stats)
                    return
                if isinstance(answer, Failed) and answer.invalid_request:
                    raise InvalidRequest(answer.message)
                raise EngineError(answer.message if isinstance(answer, Failed) else str(answer))
        except (EOFError, OSError):
            finished = True
            raise self._died() from None
        finally:
            if not finished:  # the reader left (Ctrl+C, a closed pipe): end the reply there
                self._abandon(stats)

    def _abandon(self, stats: GenerationStats) -> None:
        """Stop the reply in progress and read the pipe up to its end, so the next command's
        answers are not preceded by this reply's; a child that does not stop is ended."""
        self.interrupt()
        conn = self._conn
        deadline = time.monotonic() + ABANDON_SECONDS
        try:
            while conn is not None and time.monotonic() < deadline:
                if not conn.poll(POLL_SECONDS):
                    if self._proc is None or not self._proc.is_alive():
                        break
                    continue
                answer: Answer = conn.recv()
                if isinstance(answer, Done):
                    stats.update_from(answer.stats)
                    return
                if isinstance(answer, Failed):
                    return
        except (EOFError, OSError):
            pass
        log.warning("the engine process did not end an abandoned reply; restarting it")
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        self._died()

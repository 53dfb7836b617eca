"""The engine interface shared by the llama.cpp engine, test fakes and (later) remote engines."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Protocol, TypedDict

from app.settings import Sampling

# eos: the model ended its turn; stop: it wrote one of the request's stop strings.
StopReason = Literal["eos", "stop", "length", "cancelled", "context_full"]


class ChatMessage(TypedDict):
    role: str
    content: str


class EngineError(Exception):
    """Loading or generation failed; ``str(e)`` is meant for the user."""


def coalesce(pieces: Iterable[str], interval: float) -> Iterator[str]:
    """The pieces of a streamed reply joined so that at most one comes out per ``interval`` s.

    The first comes out at once; later ones wait for the interval, and what waits comes out with
    the next piece after it, at the end, or before an error from ``pieces`` is passed on. Each
    piece a reader receives costs it a wake-up and, in the chat view, a render.
    """
    pending: list[str] = []
    last = float("-inf")
    try:
        for text in pieces:
            pending.append(text)
            now = time.monotonic()
            if now - last >= interval:
                yield "".join(pending)
                pending.clear()
                last = now
    except Exception:
        if pending:
            yield "".join(pending)
        raise
    if pending:
        yield "".join(pending)


@dataclass(frozen=True)
class ReplyRules:
    """What a reply must obey beyond sampling, as API clients ask for it (the window asks for
    none): it ends before the first of ``stop`` (not shown), and it matches ``response_format``
    in OpenAI's shape — ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema":
    {"schema": {...}}}`` — which a local engine enforces with llama.cpp's grammar sampler."""

    stop: tuple[str, ...] = ()
    response_format: dict[str, Any] | None = None
    # A plain completion that continues a chat reply (the window's Continue): it ends where the
    # chat template ends a turn, as a chat reply does.
    ends_turn: bool = False


NO_RULES = ReplyRules()


@dataclass(frozen=True)
class LoadParams:
    context_length: int = 4096
    threads: int = 4
    gpu_layers: int = -1
    flash_attention: str = "auto"  # auto: on with GPU offload, off on the CPU
    chat_template_override: str = ""
    batch_size: int = 512
    # Without llama.cpp's extra buffer types (weights repacked for AMX and the like), whose
    # kernels crash on some processors (app/engine/cpu_safety.py).
    safe_cpu: bool = False


@dataclass(frozen=True)
class LoadedModel:
    path: str
    name: str
    context_length: int
    template_source: Literal["model", "override", "detected", "fallback"]
    template_name: str
    gpu_layers: int
    notice: str = ""  # something the user should know, e.g. a missing chat template
    safe_cpu: bool = False  # loaded in safe CPU mode (app/engine/cpu_safety.py)
    # Its chat template has an enable_thinking switch (Sampling.enable_thinking changes the prompt)
    thinking_switch: bool = False


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0  # the rest came from the cached prefix
    generated_tokens: int = 0
    time_to_first_token: float = 0.0
    prompt_seconds: float = 0.0
    generation_seconds: float = 0.0
    tokens_per_second: float = 0.0
    stop_reason: StopReason = "eos"
    messages_dropped: int = 0  # oldest turns left out because the conversation outgrew the context
    notice: str = ""  # something the user should hear once, e.g. that safe CPU mode is now on

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def update_from(self, other: GenerationStats) -> None:
        """Take ``other``'s figures (into the stats object a reader already holds)."""
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))


@dataclass
class Reply:
    """A streamed reply: iterate for text deltas; ``stats`` is complete once iteration ends."""

    deltas: Iterator[str]
    stats: GenerationStats = field(default_factory=GenerationStats)
    # The deltas already come at most ~25 times a second (coalesced where they were made), so a
    # reader need not coalesce them again: one stage between the engine and the screen.
    paced: bool = False

    def __iter__(self) -> Iterator[str]:
        return self.deltas

    def close(self) -> None:
        """Stop reading: an engine ends the reply there (``stats`` says how far it got)."""
        close = getattr(self.deltas, "close", None)
        if close is not None:
            close()


class Engine(Protocol):
    """What the UI thread glue and the CLI need from an engine (llama.cpp in a process, test
    fakes, later remote servers).

    All methods are called from the one thread that owns the engine, except ``interrupt``, which
    any thread may call (the GUI's Stop).
    """

    @property
    def loaded(self) -> LoadedModel | None: ...

    def load(
        self, path: str, params: LoadParams, cancel: threading.Event | None = None
    ) -> LoadedModel: ...

    def unload(self) -> None: ...

    def chat(
        self,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        """Start a reply to ``messages``: iterate the result for text; ``cancel`` (or
        ``interrupt``) ends it early, with ``stats.stop_reason == "cancelled"``."""
        ...

    def complete(
        self,
        prompt: str,
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        """Continue ``prompt`` as plain text, without the chat template (OpenAI's
        ``/v1/completions``); otherwise like ``chat``."""
        ...

    def format_prompt(self, messages: list[ChatMessage], enable_thinking: bool = True) -> str:
        """The text the model would read for ``messages``: its chat template applied, with the
        assistant's header to reply after (``LoadedModel.template_source`` says which template),
        rendered with ``enable_thinking`` as a reply with that ``Sampling`` would be.
        EngineError where the engine cannot say (a remote server formats its own)."""
        ...

    def prepare(self, messages: list[ChatMessage]) -> None:
        """Get ready for the next reply: when ``messages`` end with a user message (a draft),
        evaluate the prompt for it; otherwise what precedes the next message (e.g. the template's
        text). Optional work that only makes the next reply start sooner; returns at once or
        after doing it, never with a result."""

    def interrupt(self) -> None:
        """End the reply or prompt evaluation under way as soon as possible."""

    def close(self) -> None:
        """Free the model and whatever the engine holds (a process, a connection)."""

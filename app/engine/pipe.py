"""What the app and its engine process say to each other over their pipe (app/engine/process.py).

Commands go to the engine process, one at a time; answers come back. ``Prepare`` is never
answered (nobody waits for it); ``Chat`` and ``Complete`` are answered by any number of ``Delta``
and then ``Done`` or ``Failed``; every other command by one answer. Each is a small frozen
dataclass, pickled.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.types import (
    NO_RULES,
    ChatMessage,
    GenerationStats,
    LoadedModel,
    LoadParams,
    ReplyRules,
)
from app.settings import Sampling


@dataclass(frozen=True)
class Load:
    path: str
    params: LoadParams


@dataclass(frozen=True)
class Unload:
    pass


@dataclass(frozen=True)
class Chat:
    messages: list[ChatMessage]
    sampling: Sampling
    rules: ReplyRules = NO_RULES


@dataclass(frozen=True)
class Complete:
    """A plain-text continuation of ``prompt``; answered like ``Chat``."""

    prompt: str
    sampling: Sampling
    rules: ReplyRules = NO_RULES


@dataclass(frozen=True)
class Prepare:
    messages: list[ChatMessage]


@dataclass(frozen=True)
class FormatPrompt:
    messages: list[ChatMessage]
    enable_thinking: bool = True


@dataclass(frozen=True)
class Quit:
    pass


Command = Load | Unload | Chat | Complete | Prepare | FormatPrompt | Quit


@dataclass(frozen=True)
class Loaded:
    model: LoadedModel


@dataclass(frozen=True)
class Unloaded:
    pass


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    stats: GenerationStats


@dataclass(frozen=True)
class PromptText:
    text: str


@dataclass(frozen=True)
class Failed:
    message: str  # for the user
    invalid_request: bool = False  # the request's own mistake (grammar.InvalidRequest)


Answer = Loaded | Unloaded | Delta | Done | PromptText | Failed

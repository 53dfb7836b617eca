"""A scripted engine for tests of what drives an engine (the window, the API server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from app.engine.types import (
    NO_RULES,
    ChatMessage,
    EngineError,
    GenerationStats,
    LoadedModel,
    LoadParams,
    Reply,
    ReplyRules,
)
from app.settings import Sampling


class FakeEngine:
    """Streams scripted words; honours cancel between words like the real engine."""

    def __init__(self) -> None:
        self.words = ["Hello", " there", "!", " Here", " is", " **bold**", " text."]
        self.delay = 0.0
        self.fail_load = ""
        self.fail_after: int | None = None
        self._loaded: LoadedModel | None = None
        self.calls: list[list[ChatMessage]] = []
        self.prepared: list[list[ChatMessage]] = []
        self.interrupts = 0
        self.loads: list[str] = []
        self.requests: list[tuple[Sampling, ReplyRules]] = []

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def load(
        self, path: str, params: LoadParams, cancel: threading.Event | None = None
    ) -> LoadedModel:
        self.loads.append(path)
        if self.fail_load:
            raise EngineError(self.fail_load)
        self._loaded = LoadedModel(path, "Fake", params.context_length, "model", "model's own", 0)
        return self._loaded

    def unload(self) -> None:
        self._loaded = None

    def format_prompt(self, messages: list[ChatMessage], enable_thinking: bool = True) -> str:
        if self._loaded is None:
            raise EngineError("No model is loaded.")
        turns = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return turns + "<assistant>"

    def prepare(self, messages: list[ChatMessage]) -> None:
        self.prepared.append(list(messages))

    def interrupt(self) -> None:  # called from the GUI thread, as the Engine contract allows
        self.interrupts += 1

    def close(self) -> None:
        self._loaded = None

    def complete(
        self,
        prompt: str,
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        return self.chat([{"role": "user", "content": prompt}], sampling, cancel, rules)

    def chat(
        self,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        self.calls.append(list(messages))
        self.requests.append((sampling, rules))
        stats = GenerationStats(prompt_tokens=10, prompt_tokens_evaluated=10)

        def gen() -> Iterator[str]:
            started = time.perf_counter()
            for i, word in enumerate(self.words):
                if cancel.is_set():
                    stats.stop_reason = "cancelled"
                    return
                if self.fail_after is not None and i == self.fail_after:
                    raise EngineError("llama.cpp failed while generating (error -3).")
                if self.delay:
                    time.sleep(self.delay)
                stats.generated_tokens += 1
                if i == 0:
                    stats.time_to_first_token = time.perf_counter() - started
                yield word
            stats.tokens_per_second = 42.0
            stats.stop_reason = "eos"

        return Reply(gen(), stats)

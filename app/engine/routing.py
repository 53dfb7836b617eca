"""The window's engine: model files on the local engine, models of a connection on that server.

A connection (Settings → Connections) is an OpenAI-compatible server — another Hearth's
``hearth serve``, llama-server, Ollama, LM Studio, vLLM. Its models are chosen like local ones;
their "path" names the connection and the model (``remote_path``). The chat page never knows
which engine answers: this router is one Engine, and it hands each call to the engine of the
model loaded last, freeing the other side's model when the choice moves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from app.engine.types import (
    NO_RULES,
    ChatMessage,
    Engine,
    LoadedModel,
    LoadParams,
    Reply,
    ReplyRules,
)
from app.settings import Sampling

PREFIX = "remote:"


def remote_path(connection: str, model: str) -> str:
    return f"{PREFIX}{connection}/{model}"


def parse_remote_path(path: str) -> tuple[str, str] | None:
    """(connection, model id) of a remote model's path; None for a model file."""
    if not path.startswith(PREFIX):
        return None
    connection, sep, model = path[len(PREFIX) :].partition("/")
    return (connection, model) if sep and connection and model else None


class RoutingEngine:
    def __init__(self, local: Engine, connect: Callable[[str], Engine]) -> None:
        """``connect(name)`` makes the engine of the connection called ``name`` (raising
        EngineError with the reason when it cannot: unknown, or offline mode)."""
        self.local = local
        self._connect = connect
        self._remote: Engine | None = None
        self._remote_name = ""
        self._remote_info: LoadedModel | None = None  # as the window knows it: its remote path
        self._current: Engine = local

    @property
    def loaded(self) -> LoadedModel | None:
        if self._current is self.local:
            return self.local.loaded
        return self._remote_info if self._current.loaded is not None else None

    def load(
        self, path: str, params: LoadParams, cancel: threading.Event | None = None
    ) -> LoadedModel:
        remote = parse_remote_path(path)
        if remote is None:
            self._drop_remote()
            self._current = self.local
            return self.local.load(path, params, cancel)
        name, model = remote
        if self._remote is None or self._remote_name != name:
            self._drop_remote()
            self._remote, self._remote_name = self._connect(name), name
        self.local.unload()  # the local model's memory is the user's again
        self._current = self._remote
        info = self._remote.load(model, params, cancel)
        self._remote_info = LoadedModel(
            path,
            f"{info.name} ({name})",
            info.context_length,
            info.template_source,
            info.template_name,
            info.gpu_layers,
            info.notice,
        )
        return self._remote_info

    def _drop_remote(self) -> None:
        if self._remote is not None:
            self._remote.close()
            self._remote, self._remote_name, self._remote_info = None, "", None

    def unload(self) -> None:
        self._current.unload()

    def chat(
        self,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        return self._current.chat(messages, sampling, cancel, rules)

    def complete(
        self,
        prompt: str,
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        return self._current.complete(prompt, sampling, cancel, rules)

    def format_prompt(self, messages: list[ChatMessage], enable_thinking: bool = True) -> str:
        return self._current.format_prompt(messages, enable_thinking)

    def prepare(self, messages: list[ChatMessage]) -> None:
        self._current.prepare(messages)

    def interrupt(self) -> None:
        self._current.interrupt()

    def close(self) -> None:
        self._drop_remote()
        self.local.close()

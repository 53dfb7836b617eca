"""A llama.cpp model that writes exactly the tokens a test needs: the engine's token picker
replaced by one that reads a script, on a real model (a tiny generated one)."""

from __future__ import annotations

from typing import Any

import pytest

from app.engine import llama_cpp_engine
from app.engine.llama_cpp_engine import LlamaCppEngine
from app.engine.sampling import TokenPicker


class ScriptedPicker(TokenPicker):
    """Picks the tokens of ``script`` in turn (set it on a subclass, as ``script_model`` does)."""

    script: list[int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next = iter(type(self).script)

    def pick(self, ctx: Any) -> int:
        return next(self._next)


def script_model(monkeypatch: pytest.MonkeyPatch, script: list[int]) -> None:
    """The engine's next replies pick ``script``'s tokens, in order."""
    picker = type("Picker", (ScriptedPicker,), {"script": list(script)})
    monkeypatch.setattr(llama_cpp_engine, "TokenPicker", picker)


def tokens_of(engine: LlamaCppEngine, *pieces: str) -> list[int]:
    """The loaded vocabulary's tokens whose text is each of ``pieces``."""
    n_vocab = int(llama_cpp_engine.llama().llama_vocab_n_tokens(engine.vocab.handle))
    by_piece = {engine.vocab.piece(t): t for t in range(n_vocab)}
    return [by_piece[p.encode()] for p in pieces]


def eos_of(engine: LlamaCppEngine) -> int:
    return int(llama_cpp_engine.llama().llama_vocab_eos(engine.vocab.handle))

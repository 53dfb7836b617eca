"""Engines on tiny generated models, shared by the engine tests (in-process, llama.cpp)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.engine.llama_cpp_engine import LlamaCppEngine
from app.engine.types import LoadParams

PARAMS = LoadParams(context_length=512, threads=2)


@pytest.fixture
def engine(tiny_model: Path) -> Iterator[LlamaCppEngine]:
    """Test modules with another kind of engine define their own ``engine``."""
    e = LlamaCppEngine()
    e.load(str(tiny_model), PARAMS)
    yield e
    e.unload()


@pytest.fixture
def engine_2k(make_model: Callable[..., Path]) -> Iterator[LlamaCppEngine]:
    e = LlamaCppEngine()
    e.load(str(make_model("tiny-2k.gguf", n_ctx=2048)), LoadParams(context_length=2048, threads=2))
    yield e
    e.unload()

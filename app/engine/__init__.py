"""Engines that run models: the interface and the llama.cpp implementation."""

from app.engine.types import (
    ChatMessage,
    Engine,
    EngineError,
    GenerationStats,
    LoadedModel,
    LoadParams,
    Reply,
)

__all__ = [
    "ChatMessage",
    "Engine",
    "EngineError",
    "GenerationStats",
    "LoadParams",
    "LoadedModel",
    "Reply",
]

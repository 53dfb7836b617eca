"""Refuse a load that cannot fit in this computer's memory, before llama.cpp starts it.

Without this, a model larger than the free memory is loaded anyway: the system swaps until it
barely responds (or the out-of-memory killer ends the engine, minutes later). The estimate is the
fit badges' (app/hub/fit.py: weights + KV cache at the context length + runtime buffers, against
free RAM and, where layers go to a GPU, its free memory), counted with the figures of
Settings → This computer (app/hardware.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from app.engine.types import LoadedModel, LoadParams
from app.hub import fit
from app.model_file import InvalidModelFile, ModelFileInfo, read_model_file
from app.units import human_size

log = logging.getLogger(__name__)


def _kv_shape(info: ModelFileInfo) -> fit.KvShape | None:
    heads = info.head_count
    kv_heads = info.head_count_kv or heads
    head_dim = info.embedding_length // heads if heads else 0
    if not (info.block_count and kv_heads and head_dim):
        return None
    return fit.KvShape(info.block_count, kv_heads, head_dim)


def _needs(info: ModelFileInfo, context_length: int) -> tuple[int, int, fit.KvShape | None]:
    """(file bytes, context tokens, KV shape) of a load: the context as llama.cpp will make it
    (never beyond the model's trained length: app/engine/llama_cpp_engine.py)."""
    n_ctx = context_length
    if info.context_length and n_ctx > info.context_length:
        n_ctx = info.context_length
    size = info.size_bytes * max(info.shard_count, 1)  # split files: about equal parts
    return size, n_ctx, _kv_shape(info)


def refusal(path: str, params: LoadParams, loaded: LoadedModel | None) -> str | None:
    """Why ``path`` must not be loaded with ``params`` (the numbers, in words), or None when it
    fits, may fit, or cannot be judged (an unreadable header is for the load to report)."""
    try:
        info = read_model_file(Path(path))
    except (InvalidModelFile, OSError) as e:
        log.info("memory check skipped for %s: %s", path, e)
        return None
    machine = fit.this_machine()
    if params.gpu_layers == 0 and machine.vram_free and not machine.unified_memory:
        machine = fit.Machine(machine.ram_available, machine.ram_total)  # nothing on the GPU
    freed = _held_by(loaded)  # loading replaces the model the engine holds
    if freed:
        machine = fit.Machine(
            machine.ram_available + freed,
            machine.ram_total,
            machine.vram_free,
            machine.gpu,
            machine.unified_memory,
        )
    size, n_ctx, kv = _needs(info, params.context_length)
    verdict = fit.estimate(size, n_ctx, machine, kv, info.parameters)
    if verdict.verdict is not fit.Verdict.NO:
        return None
    where = "GPU and system memory" if machine.vram_free else "memory"
    return (
        f"{Path(path).name} was not loaded: it needs about {human_size(verdict.needed)} of "
        f"{where} with a context of {n_ctx:,} tokens, and {human_size(verdict.available)} is "
        "free. Loading it anyway would make the computer swap until it barely responds. "
        "Choose a smaller quantization, lower the context length in Settings, or close other "
        f"programs.\n{verdict.explanation}"
    )


def _held_by(loaded: LoadedModel | None) -> int:
    """About how much memory the loaded model holds (its file and KV cache), 0 if none."""
    if loaded is None:
        return 0
    try:
        info = read_model_file(Path(loaded.path))
    except (InvalidModelFile, OSError):
        return 0
    size, n_ctx, kv = _needs(info, loaded.context_length)
    return size + (kv.bytes_per_token() * n_ctx if kv else 0)

"""Will a model file fit on this machine? Weights + KV cache + runtime buffers vs free memory.

The estimate is what a person needs before a multi-gigabyte download, not a promise: the inputs
and the formula are returned with the verdict so the UI can show them.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from app.units import human_size

log = logging.getLogger(__name__)

RUNTIME_BYTES = 300 * 1000 * 1000  # llama.cpp's compute buffers and the app, roughly
TIGHT = 0.85  # above this share of free memory, other programs will start to suffer
# When the file's header could not be read: a typical grouped-query-attention model needs about
# 128 KiB of f16 KV cache per token per 8B parameters (Llama-3-8B: 32 layers x 1,024 x 2 x 2 bytes).
FALLBACK_KV_PER_TOKEN_PER_PARAM = 128 * 1024 / 8e9


class Verdict(str, Enum):
    FITS = "fits"
    TIGHT = "tight"
    NO = "won't fit"


@dataclass(frozen=True)
class Machine:
    ram_available: int
    ram_total: int
    vram_free: int = 0  # 0: no GPU build, or no GPU found
    gpu: str = ""
    unified_memory: bool = False  # Apple silicon: the GPU uses the same RAM

    @property
    def usable(self) -> int:
        return self.ram_available + (0 if self.unified_memory else self.vram_free)


@dataclass(frozen=True)
class KvShape:
    layers: int
    kv_heads: int
    head_dim: int  # K and V size per head

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> KvShape | None:
        arch = meta.get("general.architecture")
        if not isinstance(arch, str):
            return None

        def get(key: str) -> int:
            v = meta.get(f"{arch}.{key}")
            return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0

        layers = get("block_count")
        heads = get("attention.head_count")
        kv_heads = get("attention.head_count_kv") or heads
        embedding = get("embedding_length")
        head_dim = get("attention.key_length") or (embedding // heads if heads else 0)
        if not (layers and kv_heads and head_dim):
            return None
        return cls(layers, kv_heads, head_dim)

    def bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * 2  # K and V, f16


@dataclass(frozen=True)
class Fit:
    verdict: Verdict
    needed: int
    available: int
    on_gpu: bool
    explanation: str  # the formula with this file's numbers, for a tooltip


def estimate(
    file_size: int,
    context_length: int,
    machine: Machine,
    kv: KvShape | None,
    parameters: int = 0,
) -> Fit:
    if kv is not None:
        kv_bytes = kv.bytes_per_token() * context_length
        kv_text = (
            f"KV cache {human_size(kv_bytes)} = {context_length:,} tokens × {kv.layers} layers × "
            f"{kv.kv_heads} KV heads × {kv.head_dim} × 2 (K and V) × 2 bytes"
        )
    else:
        params = parameters or int(file_size * 1.8)  # about 4.5 bits per weight
        kv_bytes = int(params * FALLBACK_KV_PER_TOKEN_PER_PARAM * context_length)
        kv_text = (
            f"KV cache ≈ {human_size(kv_bytes)} (guessed from the size: the file's layout "
            "could not be read)"
        )
    needed = file_size + kv_bytes + RUNTIME_BYTES
    on_gpu = bool(machine.vram_free) and not machine.unified_memory and needed <= machine.vram_free
    available = machine.vram_free if on_gpu else machine.usable
    if needed <= available * TIGHT:
        verdict = Verdict.FITS
    elif needed <= available:
        verdict = Verdict.TIGHT
    else:
        verdict = Verdict.NO
    where = [f"RAM {human_size(machine.ram_available)} free of {human_size(machine.ram_total)}"]
    if machine.vram_free:
        where.append(
            f"{machine.gpu or 'GPU'} {human_size(machine.vram_free)} free"
            + (" (shared with RAM)" if machine.unified_memory else "")
        )
    explanation = (
        f"Needs ≈ {human_size(needed)}: weights {human_size(file_size)} + {kv_text} "
        f"+ runtime {human_size(RUNTIME_BYTES)}.\n"
        f"This machine: {', '.join(where)}.\n"
        f"Fits below {int(TIGHT * 100)}% of {'GPU memory' if on_gpu else 'free memory'}; "
        "tight up to 100%."
    )
    return Fit(verdict, needed, available, on_gpu, explanation)


def this_machine() -> Machine:
    """Free RAM now, and free GPU memory when this llama.cpp build can use a GPU: the figures
    Settings → Hardware shows (app/hardware.py)."""
    from app import hardware

    ram = hardware.memory()
    found = hardware.gpus(ram) if gpu_backend() else ()
    if not found:  # a CPU build, or no figure for this GPU: estimate against RAM
        return Machine(ram.available, ram.total)
    gpu = found[0]
    return Machine(ram.available, ram.total, gpu.vram_free, gpu.name, gpu.unified_memory)


GPU_BACKENDS = {"cuda": "NVIDIA GPU", "metal": "Apple GPU", "hip": "AMD GPU", "vulkan": "GPU"}


@functools.cache
def gpu_backend() -> str:
    """The GPU backend the installed llama.cpp was built with ("" for CPU-only), found from its
    library files: loading llama.cpp here would start a GPU context in the window's process."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return ""
    folder = Path(next(iter(spec.submodule_search_locations))) / "lib"
    names = [p.name.lower() for p in folder.glob("*ggml-*")] if folder.is_dir() else []
    return next((b for b in GPU_BACKENDS if any(f"ggml-{b}" in n for n in names)), "")

"""Automatic context length and GPU layers: what a model is loaded with when Settings say
"Automatic", worked out from the model file and this computer's free memory at each load.

- Context: the model's trained length, at most ``AUTO_CONTEXT_CEILING``, and no longer than lets
  weights + KV cache + runtime buffers stay within ``fit.TIGHT`` of free memory.
- GPU layers: as many of the model's layers as fit in free GPU memory, each with its share of
  the KV cache for that context, less a reserve for the GPU's compute buffers. llama.cpp puts the
  *last* ``n`` layers on the GPU, and the output layer too when ``n`` exceeds the layer count.

``choose`` is pure: it takes the model's layout and the machine's figures, so it is tested with
made-up numbers; ``read_layout`` reads a layout from a GGUF file's tensor table (header only).
"""

from __future__ import annotations

import functools
import mmap
import re
from dataclasses import dataclass
from pathlib import Path

from app.hub import fit
from app.model_file import (
    InvalidModelFile,
    _Cursor,  # the one GGUF parser: its cursor and value skipper walk the tensor table here
    _gguf_tables,
    _read_value,
    read_model_file,
    shard_info,
)
from app.units import human_size

AUTO_CONTEXT = 0  # Settings.context_length's "Automatic"
AUTO_GPU_LAYERS = -1  # Settings.gpu_layers's "Automatic"
AUTO_CONTEXT_CEILING = 32_768  # longer contexts only when set: their KV cache and prompts cost
MIN_AUTO_CONTEXT = 2048  # below this a chat barely holds a question and its answer
UNKNOWN_TRAINED_CONTEXT = 4096  # a header without a trained length
ESTIMATE_CONTEXT = 4096  # fit badges judge an automatic context at this length
# Left free on the GPU for llama.cpp's compute buffers and the driver's context (llama.cpp's own
# fitting, `--fit`, leaves 1 GiB per device by default).
GPU_RESERVE = 1024 * 1024 * 1024
_BLOCK = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class ModelLayout:
    """How a model's weights are laid out, as far as placing them in memory goes."""

    layer_bytes: tuple[int, ...]  # weights of each repeating layer (blk.N.*), in order
    output_bytes: int  # the output head and its norm: on the GPU only with every layer
    other_bytes: int  # token embeddings and the rest: always in RAM
    kv: fit.KvShape | None
    trained_context: int  # 0: the header does not say
    parameters: int = 0
    # The output head is the token embeddings (no output.weight): on the GPU it is a copy, the
    # embeddings stay in RAM for the input.
    tied_output: bool = False

    @property
    def layers(self) -> int:
        return len(self.layer_bytes)

    @property
    def weights(self) -> int:
        """All weights as the file holds them."""
        tied = self.output_bytes if self.tied_output else 0
        return sum(self.layer_bytes) + self.output_bytes + self.other_bytes - tied

    def kv_per_token(self) -> int:
        """KV cache bytes per token of context, all layers (f16)."""
        if self.kv is not None:
            return self.kv.bytes_per_token()
        params = self.parameters or int(self.weights * 1.8)  # about 4.5 bits per weight
        return max(1, int(params * fit.FALLBACK_KV_PER_TOKEN_PER_PARAM))

    def kv_per_layer_token(self) -> int:
        return self.kv_per_token() // max(self.layers, 1)

    def footprint(self, context_length: int, gpu_layers: int) -> tuple[int, int]:
        """(RAM, GPU memory) this model holds once loaded with these figures (a model about to be
        replaced gives these back)."""
        on_gpu = min(max(gpu_layers, 0), self.layers + 1)
        blocks = min(on_gpu, self.layers)
        per_layer = self.kv_per_layer_token() * context_length
        vram = sum(self.layer_bytes[self.layers - blocks :]) + blocks * per_layer
        moved = vram
        if on_gpu > self.layers:
            vram += self.output_bytes
            moved += 0 if self.tied_output else self.output_bytes
        total = self.weights + self.kv_per_token() * context_length
        return total - moved, vram


@dataclass(frozen=True)
class LoadFit:
    """What a load uses and which of it was chosen automatically, with the sums in words."""

    path: str
    context_length: int
    gpu_layers: int  # what llama.cpp is given: -1 all, 0 none, n the last n layers
    context_auto: bool
    gpu_layers_auto: bool
    layers: int  # the model's repeating layers (0: not known)
    explanation: str  # for a tooltip
    # What was asked for (AUTO_CONTEXT, AUTO_GPU_LAYERS or numbers): a model loaded with these
    # keeps its choices until they change (free memory moves a little all the time).
    requested: tuple[int, int] = (AUTO_CONTEXT, AUTO_GPU_LAYERS)


def choose(
    layout: ModelLayout,
    machine: fit.Machine,
    *,
    context_length: int = AUTO_CONTEXT,
    gpu_layers: int = AUTO_GPU_LAYERS,
    gpu_offload: bool = True,
    ceiling: int = AUTO_CONTEXT_CEILING,
    path: str = "",
) -> LoadFit:
    """The context length and GPU layers to load ``layout`` with on ``machine``.

    Args:
        context_length: tokens, or ``AUTO_CONTEXT``.
        gpu_layers: layers for the GPU, or ``AUTO_GPU_LAYERS``; a number is kept as it is.
        gpu_offload: this llama.cpp build has a GPU backend (else nothing goes to a GPU).
        ceiling: the longest context chosen automatically.
    """
    notes: list[str] = []
    trained = layout.trained_context
    if context_length != AUTO_CONTEXT:
        n_ctx = min(context_length, trained) if trained else context_length
    else:
        n_ctx = _auto_context(layout, machine, gpu_layers, gpu_offload, ceiling, notes)
    if not gpu_offload:
        layers = 0
    elif gpu_layers != AUTO_GPU_LAYERS:
        layers = gpu_layers
    else:
        layers = _auto_layers(layout, machine, n_ctx, notes)
    return LoadFit(
        path=path,
        context_length=n_ctx,
        gpu_layers=layers,
        context_auto=context_length == AUTO_CONTEXT,
        gpu_layers_auto=gpu_offload and gpu_layers == AUTO_GPU_LAYERS,
        layers=layout.layers,
        explanation="\n".join(notes),
        requested=(context_length, gpu_layers),
    )


def _auto_context(
    layout: ModelLayout,
    machine: fit.Machine,
    gpu_layers: int,
    gpu_offload: bool,
    ceiling: int,
    notes: list[str],
) -> int:
    trained = layout.trained_context or UNKNOWN_TRAINED_CONTEXT
    wanted = min(trained, ceiling)
    gpu_used = gpu_offload and gpu_layers != 0 and not machine.unified_memory
    free = machine.ram_available + (machine.vram_free if gpu_used else 0)
    room = int(free * fit.TIGHT) - layout.weights - fit.RUNTIME_BYTES
    fits = max(room, 0) // layout.kv_per_token()
    step = 1024 if fits >= 1024 else 256
    n_ctx = max(min(wanted, fits // step * step), min(wanted, MIN_AUTO_CONTEXT))
    why = (
        f"the model's trained length {trained:,}"
        if wanted == trained
        else f"at most {ceiling:,} automatically (trained for {trained:,})"
    )
    if n_ctx < wanted:
        why = (
            f"{why}, shortened so weights {human_size(layout.weights)} + KV cache "
            f"{human_size(layout.kv_per_token() * n_ctx)} stay within "
            f"{int(fit.TIGHT * 100)}% of {human_size(free)} free"
        )
        if n_ctx > fits:
            why += f" (they do not even at {n_ctx:,} tokens, the least chosen automatically)"
    notes.append(f"Context {n_ctx:,} tokens (automatic): {why}.")
    return n_ctx


def _auto_layers(layout: ModelLayout, machine: fit.Machine, n_ctx: int, notes: list[str]) -> int:
    total = layout.layers + 1  # every layer and the output head
    if machine.unified_memory:
        notes.append(f"All {layout.layers} layers on {machine.gpu or 'the GPU'} (shared memory).")
        return total
    if not machine.vram_free:
        notes.append("GPU memory could not be read: all layers go to the GPU.")
        return total
    budget = machine.vram_free - GPU_RESERVE
    per_layer_kv = layout.kv_per_layer_token() * n_ctx
    used = 0
    placed = 0
    for size in reversed(layout.layer_bytes):  # llama.cpp offloads the last layers
        if used + size + per_layer_kv > budget:
            break
        used += size + per_layer_kv
        placed += 1
    if placed == layout.layers and used + layout.output_bytes <= budget:
        used += layout.output_bytes
        placed = total
    notes.append(
        f"{min(placed, layout.layers)} of {layout.layers} layers on {machine.gpu or 'the GPU'} "
        f"(automatic): {human_size(used)} of weights and KV cache in "
        f"{human_size(machine.vram_free)} free, less {human_size(GPU_RESERVE)} kept for "
        "its compute buffers."
    )
    return placed


def read_layout(path: Path) -> ModelLayout:
    """The layout of the model at ``path`` (every part of a split model), from its header; kept
    while the file is unchanged (a header with a large vocabulary takes tens of milliseconds,
    and the window asks on the GUI thread as it loads).

    Raises:
        InvalidModelFile: the file cannot be read or is not a GGUF model.
    """
    try:
        st = path.stat()
    except OSError as e:
        raise InvalidModelFile(f"{path.name} cannot be read: {e.strerror or e}.") from None
    return _read_layout(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_layout(name: str, _size: int, _mtime_ns: int) -> ModelLayout:
    path = Path(name)
    info = read_model_file(path)
    shard = shard_info(path)
    parts = [path]
    if shard is not None and shard[2] > 1:
        stem, _, count = shard
        parts = [path.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    blocks: dict[int, int] = {}
    output = other = embeddings = 0
    has_head = False
    for part in parts:
        for name, size in _tensor_sizes(part):
            m = _BLOCK.match(name)
            if m:
                blocks[int(m[1])] = blocks.get(int(m[1]), 0) + size
            elif name.startswith("output"):
                output += size
                has_head = has_head or name == "output.weight"
            else:
                other += size
                embeddings += size if name == "token_embd.weight" else 0
    layer_count = max(info.block_count, max(blocks, default=-1) + 1)
    heads = info.head_count
    head_dim = info.embedding_length // heads if heads else 0
    kv_heads = info.head_count_kv or heads
    kv = fit.KvShape(layer_count, kv_heads, head_dim) if kv_heads and head_dim else None
    return ModelLayout(
        layer_bytes=tuple(blocks.get(i, 0) for i in range(layer_count)),
        output_bytes=output if has_head else output + embeddings,
        other_bytes=other,
        kv=kv if layer_count else None,
        trained_context=info.context_length,
        parameters=info.parameters,
        tied_output=not has_head,
    )


def _tensor_sizes(path: Path) -> list[tuple[str, int]]:
    """(name, bytes) of each tensor in a GGUF file's tensor table (read through ``mmap``, so
    only the header's pages are touched)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _walk_tensors(_Cursor(mm, mm.size()))
    except (OSError, ValueError) as e:  # ValueError: an empty file cannot be mapped
        raise InvalidModelFile(f"{path.name} cannot be read: {e}.") from None


def _walk_tensors(c: _Cursor) -> list[tuple[str, int]]:
    quant_sizes, tensor_types, _ = _gguf_tables()
    c.pos = 8  # magic and version (read_model_file checked them)
    tensor_count = c.u64("the tensor count")
    kv_count = c.u64("the metadata count")
    for _ in range(kv_count):
        key = c.string("a metadata key")
        _read_value(c, c.u32(f"the type of {key!r}"), key, keep=False)
    sizes: list[tuple[str, int]] = []
    for i in range(tensor_count):
        name = c.string(f"the name of tensor {i}")
        dims = [c.u64(f"the shape of {name!r}") for _ in range(c.u32(f"the dims of {name!r}"))]
        ttype = c.u32(f"the type of {name!r}")
        c.u64(f"the offset of {name!r}")
        try:
            block, type_size = quant_sizes[tensor_types(ttype)]
        except (ValueError, KeyError):
            raise InvalidModelFile(f"Tensor {name!r} has an unknown type {ttype}.") from None
        n = 1
        for d in dims:
            n *= d
        sizes.append((name, n // block * type_size))
    return sizes


def context_for_estimates(context_length: int) -> int:
    """The context fit badges judge a model at: the setting, or for "Automatic" (which shortens
    the context to fit) ``ESTIMATE_CONTEXT``."""
    return context_length if context_length != AUTO_CONTEXT else ESTIMATE_CONTEXT

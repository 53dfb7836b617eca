"""Automatic context length and GPU layers, with made-up models and machines."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine import auto_fit
from app.engine.auto_fit import GPU_RESERVE, ModelLayout, choose, read_layout
from app.hub.fit import TIGHT, KvShape, Machine
from tests.gguf_factory import write_tiny_model

GB = 1000**3
MiB = 1024**2


def llama_8b(trained: int = 131_072) -> ModelLayout:
    """Llama-3-8B at Q4_K_M, roughly: 32 layers of 140 MiB, a 400 MiB head, 280 MiB embeddings;
    8 KV heads of 128: 128 KiB of KV cache per token (4 KiB per layer)."""
    return ModelLayout(
        layer_bytes=(140 * MiB,) * 32,
        output_bytes=400 * MiB,
        other_bytes=280 * MiB,
        kv=KvShape(layers=32, kv_heads=8, head_dim=128),
        trained_context=trained,
    )


def gpu(vram_free: int, ram: int = 32 * GB) -> Machine:
    return Machine(ram, ram * 2, vram_free, "RTX Test")


def test_all_layers_and_the_head_go_to_a_gpu_they_fit_in() -> None:
    model = llama_8b()
    chosen = choose(model, gpu(24 * GB))
    assert chosen.gpu_layers == 33  # 32 layers and the output head: n_gpu_layers > n_layer
    assert chosen.gpu_layers_auto
    assert "32 of 32 layers on RTX Test" in chosen.explanation


def test_some_layers_fit_the_rest_stay_on_the_cpu() -> None:
    model = llama_8b()
    context = 8192
    per_layer = 140 * MiB + 4 * 1024 * context  # weights and its share of the KV cache
    vram = GPU_RESERVE + 20 * per_layer + per_layer // 2
    chosen = choose(model, gpu(vram), context_length=context)
    assert chosen.gpu_layers == 20
    assert not chosen.context_auto
    assert "20 of 32 layers" in chosen.explanation


def test_no_layer_fits_a_gpu_with_less_free_than_its_reserve() -> None:
    chosen = choose(llama_8b(), gpu(GPU_RESERVE + 100 * MiB), context_length=4096)
    assert chosen.gpu_layers == 0
    assert chosen.gpu_layers_auto
    assert "0 of 32 layers" in chosen.explanation


def test_a_longer_context_leaves_room_for_fewer_layers() -> None:
    machine = gpu(6 * GB)
    short = choose(llama_8b(), machine, context_length=4096).gpu_layers
    long = choose(llama_8b(), machine, context_length=32_768).gpu_layers
    assert (short, long) == (30, 17)  # 140 MiB a layer, plus 16 MiB or 128 MiB of KV cache
    # KV cache grows with the context: 32 layers x 8 heads x 128 x K,V x 2 bytes per token.
    assert llama_8b().kv_per_token() == 128 * 1024


def test_a_number_of_layers_set_by_hand_is_kept() -> None:
    chosen = choose(llama_8b(), gpu(GPU_RESERVE), gpu_layers=12, context_length=4096)
    assert (chosen.gpu_layers, chosen.gpu_layers_auto) == (12, False)
    assert choose(llama_8b(), gpu(24 * GB), gpu_layers=0).gpu_layers == 0


def test_a_cpu_build_puts_nothing_on_a_gpu() -> None:
    chosen = choose(llama_8b(), gpu(24 * GB), gpu_offload=False)
    assert (chosen.gpu_layers, chosen.gpu_layers_auto) == (0, False)


def test_unknown_gpu_memory_and_apple_unified_memory_take_every_layer() -> None:
    assert choose(llama_8b(), Machine(16 * GB, 32 * GB)).gpu_layers == 33
    apple = Machine(16 * GB, 32 * GB, 20 * GB, "Apple GPU", unified_memory=True)
    assert choose(llama_8b(), apple).gpu_layers == 33


def test_automatic_context_is_the_trained_length_up_to_the_ceiling() -> None:
    roomy = Machine(64 * GB, 128 * GB)
    assert choose(llama_8b(trained=8192), roomy, gpu_offload=False).context_length == 8192
    capped = choose(llama_8b(trained=131_072), roomy, gpu_offload=False)
    assert capped.context_length == auto_fit.AUTO_CONTEXT_CEILING
    assert capped.context_auto
    assert "at most 32,768 automatically (trained for 131,072)" in capped.explanation
    assert choose(llama_8b(), roomy, ceiling=65_536).context_length == 65_536


def test_automatic_context_is_shortened_to_fit_free_ram() -> None:
    model = llama_8b()
    ram = 8 * GB  # 5.1 GB of weights: room for ~12k tokens of KV cache within 85%
    chosen = choose(model, Machine(ram, 16 * GB), gpu_offload=False)
    n = chosen.context_length
    assert auto_fit.MIN_AUTO_CONTEXT <= n < auto_fit.AUTO_CONTEXT_CEILING
    assert n % 1024 == 0
    needed = model.weights + model.kv_per_token() * n + 300 * 1000 * 1000
    assert needed <= ram * TIGHT < needed + model.kv_per_token() * 1024
    assert "shortened so weights" in chosen.explanation
    # The GPU's free memory counts too when layers go there.
    assert choose(model, gpu(8 * GB, ram=ram)).context_length > n


def test_automatic_context_never_drops_below_a_usable_chat() -> None:
    """Weights that do not fit at all: the memory check refuses the load with the numbers."""
    chosen = choose(llama_8b(), Machine(2 * GB, 4 * GB), gpu_offload=False)
    assert chosen.context_length == auto_fit.MIN_AUTO_CONTEXT
    assert "they do not even at 2,048 tokens" in chosen.explanation


def test_a_context_set_by_hand_stops_at_the_trained_length() -> None:
    chosen = choose(llama_8b(trained=8192), Machine(GB, 2 * GB), context_length=16_384)
    assert (chosen.context_length, chosen.context_auto) == (8192, False)


def test_footprint_splits_ram_and_gpu_memory() -> None:
    model = llama_8b()
    ram, vram = model.footprint(4096, 33)
    assert vram == 32 * 140 * MiB + 400 * MiB + model.kv_per_token() * 4096
    assert ram == 280 * MiB
    assert model.footprint(4096, 0) == (model.weights + model.kv_per_token() * 4096, 0)


def test_layout_read_from_a_gguf_file(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "tiny.gguf", n_ctx=512)
    layout = read_layout(path)
    assert layout.layers == 2
    assert layout.trained_context == 512
    # Each layer: two f32 norms of 64, q/o 64x64, k/v 64x64 (4 KV heads of 16), ffn 3x64x128.
    assert layout.layer_bytes == ((2 * 64 + 4 * 64 * 64 + 3 * 64 * 128) * 4,) * 2
    assert layout.kv == KvShape(layers=2, kv_heads=4, head_dim=16)
    assert not layout.tied_output
    assert layout.weights <= path.stat().st_size


def test_layout_of_the_starter_model_counts_every_byte_of_its_weights(starter_model: Path) -> None:
    path = starter_model  # the fixture fails, with how to install it, where it is missing
    layout = read_layout(path)
    assert layout.layers == 30
    assert layout.tied_output  # SmolLM2 shares its embeddings with the output head
    assert 0.95 < layout.weights / path.stat().st_size <= 1.0
    assert choose(layout, gpu(24 * GB)).gpu_layers == 31


def test_load_params_work_out_automatic_values_for_the_model_at_each_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.context import AppContext
    from app.engine.types import LoadedModel
    from app.hub import fit

    path = str(write_tiny_model(tmp_path / "tiny.gguf", n_ctx=512))
    machine = Machine(GB, 2 * GB, GPU_RESERVE + 10 * MiB, "Test GPU")
    monkeypatch.setattr(fit, "gpu_backend", lambda: "cuda")
    monkeypatch.setattr(fit, "this_machine", lambda: machine)
    ctx = AppContext.open()
    params = ctx.load_params(path)
    assert (params.context_length, params.gpu_layers) == (512, 3)  # trained length; 2 layers + head
    assert ctx.last_fit is not None
    assert (ctx.last_fit.context_auto, ctx.last_fit.gpu_layers_auto) == (True, True)
    assert ctx.load_params().context_length == 4096  # no model to measure: the old default

    # The GPU's memory now held by the model loaded: loading it again gives that back...
    machine = Machine(GB, 2 * GB, GPU_RESERVE + 1, "Test GPU")
    held = LoadedModel(path, "tiny", 512, "model", "ChatML", 3)
    assert ctx.load_params(path, replacing=held).gpu_layers == 3
    # ...and while it is loaded, its choices stay (a send does not reload it) ...
    assert ctx.load_params(path, keep=True).gpu_layers == 3
    # ...but a fresh load, once another program took the memory, puts none there.
    assert ctx.load_params(path).gpu_layers == 0
    ctx.settings.gpu_layers = 1  # set by hand
    assert ctx.load_params(path, keep=True).gpu_layers == 1
    assert ctx.load_params(path, context_length=256).context_length == 256  # the chat's own

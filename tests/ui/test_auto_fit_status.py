"""The chat page says which load figures were chosen automatically, and Settings offer it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import pytest
from pytestqt.qtbot import QtBot

from app.engine.types import LoadedModel, LoadParams
from app.hub import fit
from tests.fake_engine import FakeEngine
from ui.main_window import MainWindow

GB = 1000**3


class GpuFakeEngine(FakeEngine):
    """Reports the GPU layers it was given, as llama.cpp's build with a GPU backend does."""

    def __init__(self) -> None:
        super().__init__()
        self.params: list[LoadParams] = []

    def load(
        self, path: str, params: LoadParams, cancel: threading.Event | None = None
    ) -> LoadedModel:
        self.params.append(params)
        info = replace(super().load(path, params, cancel), gpu_layers=max(params.gpu_layers, 0))
        self._loaded = info
        return info


def ready(window: MainWindow) -> str:
    return window.chat_page.status.text()


def test_status_line_says_context_was_chosen_automatically(
    qtbot: QtBot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    """The starter model (trained for 8,192 tokens) on a CPU build with plenty of memory."""
    assert window.ctx.settings.context_length == 0  # a new install: Automatic
    qtbot.waitUntil(lambda: ready(window).startswith("Ready"), timeout=10_000)
    assert ready(window).startswith("Ready · context 8,192 tokens (auto)")
    assert "layers on GPU" not in ready(window)  # a CPU build
    assert "the model's trained length 8,192" in window.chat_page.status.toolTip()

    window.settings_page.context.setValue(2048)  # set by hand: no "(auto)"
    qtbot.waitUntil(lambda: "context 2,048 tokens" in ready(window), timeout=10_000)
    assert "(auto)" not in ready(window)


@pytest.fixture
def gpu_machine(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """This computer, as a CUDA build with an NVIDIA GPU of ``vram`` bytes free would see it."""

    def use(vram: int) -> None:
        machine = fit.Machine(32 * GB, 64 * GB, vram, "Test GPU")
        monkeypatch.setattr(fit, "gpu_backend", lambda: "cuda")
        monkeypatch.setattr(fit, "this_machine", lambda: machine)

    return use


def test_status_line_says_gpu_layers_were_chosen_automatically(
    qtbot: QtBot, make_window: Callable[..., MainWindow], gpu_machine: Callable[[int], None]
) -> None:
    gpu_machine(8 * GB)
    engine = GpuFakeEngine()
    window = make_window(engine_factory=lambda: engine)
    qtbot.waitUntil(lambda: ready(window).startswith("Ready"), timeout=10_000)
    # SmolLM2's 30 layers and its head fit: llama.cpp is asked for all 31.
    assert engine.params[-1].gpu_layers == 31
    assert "context 8,192 tokens (auto) · 30 of 30 layers on GPU (auto)" in ready(window)
    assert "30 of 30 layers on Test GPU (automatic)" in window.chat_page.status.toolTip()

    window.settings_page.gpu_layers.setValue(12)  # set by hand: kept, no "(auto)"
    qtbot.waitUntil(lambda: engine.params[-1].gpu_layers == 12, timeout=10_000)
    qtbot.waitUntil(lambda: "12 of 30 layers on GPU" in ready(window), timeout=10_000)
    assert "GPU (auto)" not in ready(window)


def test_a_small_gpu_takes_only_the_layers_that_fit(
    qtbot: QtBot, make_window: Callable[..., MainWindow], gpu_machine: Callable[[int], None]
) -> None:
    # 1 GiB reserve, then room for 10 of SmolLM2's layers (2.2 MB each, 6.3 MB of KV cache each
    # at 8,192 tokens).
    gpu_machine(1024**3 + 10 * (2_216_448 + 3 * 64 * 2 * 2 * 8192) + 1000)
    engine = GpuFakeEngine()
    window = make_window(engine_factory=lambda: engine)
    qtbot.waitUntil(lambda: ready(window).startswith("Ready"), timeout=10_000)
    assert engine.params[-1].gpu_layers == 10
    assert "10 of 30 layers on GPU (auto)" in ready(window)


def test_settings_offer_automatic_context_and_gpu_layers(qtbot: QtBot, window: MainWindow) -> None:
    page = window.settings_page
    assert page.context.text() == "Automatic"
    assert page.gpu_layers.text() == "Automatic"
    page.context.setValue(100)  # typed below the least a context may be
    assert window.ctx.settings.context_length == 256
    page.context.setValue(0)
    page.gpu_layers.setValue(0)
    assert (window.ctx.settings.context_length, window.ctx.settings.gpu_layers) == (0, 0)

"""What Hearth reads of this computer: cores, memory, GPUs, llama.cpp's build; and the fit
badges counting with the same figures."""

from __future__ import annotations

import os
import stat
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from app import hardware
from app.hardware import Gpu, LlamaBuild, Memory, Processor
from app.hub.fit import Machine

GIB = 1024**3


def cpu(physical: int, logical: int, performance: int = 0) -> Processor:
    return Processor("Test CPU", "x86_64", physical, logical, performance)


@pytest.mark.parametrize(
    ("processor", "threads"),
    [
        (cpu(2, 2), 2),  # this VM: both cores
        (cpu(8, 16), 8),  # hyper-threads add contention, not speed
        (cpu(64, 128), hardware.MAX_DEFAULT_THREADS),  # memory-bound long before
        (cpu(12, 12, performance=8), 8),  # Apple silicon: the performance cores
        (cpu(0, 6), 6),  # physical cores unknown
    ],
)
def test_automatic_threads_are_the_physical_cores_capped(
    processor: Processor, threads: int
) -> None:
    assert hardware.default_threads(processor) == threads


def test_this_computer_is_described() -> None:
    found = hardware.hardware()
    assert found.processor.physical_cores >= 1
    assert found.processor.logical_cores >= found.processor.physical_cores
    assert found.processor.model
    assert 0 < found.memory.available <= found.memory.total


@pytest.mark.parametrize(
    ("text", "features"),
    [
        (
            "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
            "AVX512 = 0 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ",
            ("SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA"),
        ),
        (  # a CUDA build: the CUDA section's switches are no CPU features
            "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | "
            "CPU : SSE3 = 1 | AVX2 = 1 | FMA = 1 | ",
            ("SSE3", "AVX2", "FMA"),
        ),
        (  # Apple silicon
            "Metal : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | "
            "DOTPROD = 1 | ACCELERATE = 1 | REPACK = 1 | ",
            ("NEON", "ARM_FMA", "FP16_VA", "DOTPROD"),
        ),
        ("", ()),
    ],
)
def test_the_instruction_sets_llama_cpp_reports(text: str, features: tuple[str, ...]) -> None:
    assert hardware.parse_system_info(text) == features


def test_llama_cpp_describes_its_own_build_from_a_child_process() -> None:
    from importlib.metadata import version

    build = hardware.llama_build()
    assert build.bindings_version == version("llama_cpp_python")
    assert "CPU" in build.backends
    assert any(d.kind == "CPU" for d in build.devices)
    assert build.ggml_version.count(".") == 2
    if os.uname().machine == "x86_64":
        assert "SSE3" in build.cpu_features


def fake_nvml(monkeypatch: pytest.MonkeyPatch, *, fails: bool = False) -> None:
    class Info:
        total = 12 * GIB
        free = 10 * GIB

    def init() -> None:
        if fails:
            raise RuntimeError("NVML_ERROR_DRIVER_NOT_LOADED")

    module = types.SimpleNamespace(
        nvmlInit=init,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda _h: b"NVIDIA GeForce RTX 4070",
        nvmlDeviceGetMemoryInfo=lambda _h: Info(),
    )
    monkeypatch.setitem(sys.modules, "pynvml", module)


@pytest.mark.skipif(sys.platform == "darwin", reason="Apple's GPU is read differently")
def test_an_nvidia_gpu_is_read_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml(monkeypatch)
    assert hardware.gpus() == (Gpu("NVIDIA GeForce RTX 4070", 12 * GIB, 10 * GIB, "NVIDIA"),)


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for nvidia-smi")
def test_without_nvml_nvidia_smi_gives_the_figures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_nvml(monkeypatch, fails=True)
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA A100-SXM4-40GB, 40960, 40000'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(hardware.platform, "machine", lambda: "x86_64")
    mib = 1024 * 1024
    assert hardware.gpus() == (Gpu("NVIDIA A100-SXM4-40GB", 40960 * mib, 40000 * mib, "NVIDIA"),)


def test_no_gpu_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    monkeypatch.setattr("shutil.which", lambda _name: None)
    monkeypatch.setattr(hardware.sys, "platform", "linux")
    assert hardware.gpus() == ()


def test_apple_silicon_shares_its_memory_with_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware.sys, "platform", "darwin")
    monkeypatch.setattr(hardware.platform, "machine", lambda: "arm64")
    (gpu,) = hardware.gpus(Memory(total=16 * GIB, available=10 * GIB))
    assert gpu.unified_memory
    assert gpu.vram_total == 12 * GIB  # the share macOS lets Metal use
    assert gpu.vram_free == 10 * GIB


def test_fit_badges_count_with_the_hardware_panels_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.hub import fit

    monkeypatch.setattr(hardware, "memory", lambda: Memory(total=32 * GIB, available=20 * GIB))
    fake_nvml(monkeypatch)
    monkeypatch.setattr(fit, "gpu_backend", lambda: "cuda")
    machine = fit.this_machine()
    assert (machine.ram_total, machine.ram_available) == (32 * GIB, 20 * GIB)
    assert (machine.gpu, machine.vram_free) == ("NVIDIA GeForce RTX 4070", 10 * GIB)
    monkeypatch.setattr(fit, "gpu_backend", lambda: "")  # a CPU build cannot use the GPU
    assert fit.this_machine().vram_free == 0


def build(backends: tuple[str, ...], features: tuple[str, ...] = ("AVX2", "FMA")) -> LlamaBuild:
    return LlamaBuild("0.3.36", "0.5.0", "0.25.3", "abc", features, backends)


def test_the_backend_in_use_is_said_in_words() -> None:
    nvidia = (Gpu("RTX 4070", 12 * GIB, 10 * GIB, "NVIDIA"),)
    assert hardware.backend_in_use(build(("CPU",)), (), -1) == "CPU"
    assert hardware.backend_in_use(build(("CPU",)), nvidia, -1) == "CPU"  # a CPU-only build
    assert hardware.backend_in_use(build(("CUDA", "CPU")), nvidia, -1) == "CUDA (RTX 4070)"
    # GPU layers 0 keeps the model on the CPU, whatever the build
    assert hardware.backend_in_use(build(("CUDA", "CPU")), nvidia, 0) == "CPU"


# Defaults from the machine


def test_automatic_threads_reach_the_engine() -> None:
    from app.context import AppContext

    ctx = AppContext.open()
    assert ctx.settings.threads == 0  # a new install: Automatic
    assert ctx.load_params().threads == hardware.default_threads()
    ctx.settings.threads = 3  # set by hand
    assert ctx.load_params().threads == 3


def machine_with(available: int) -> Callable[[], Machine]:
    return lambda: Machine(ram_available=available, ram_total=available * 2)


def test_a_model_that_cannot_fit_is_refused_with_the_numbers_before_loading(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.engine.process import ProcessEngine
    from app.engine.types import EngineError, LoadParams
    from app.hub import fit

    monkeypatch.setattr(fit, "this_machine", machine_with(20 * 1000 * 1000))  # 20 MB free
    engine = ProcessEngine()
    try:
        with pytest.raises(EngineError) as refused:
            engine.load(str(tiny_model), LoadParams(context_length=2048, threads=1))
        message = str(refused.value)
        assert message.startswith(f"{tiny_model.name} was not loaded: it needs about ")
        assert "and 20.0 MB is free" in message
        assert "runtime 300.0 MB" in message  # the sum, term by term
        assert "context of 512 tokens" in message  # capped at the model's trained length
        assert engine._proc is None  # llama.cpp never started
    finally:
        engine.close()


def test_replacing_the_loaded_model_counts_the_memory_it_frees(tiny_model: Path) -> None:
    from app.engine import memory_check
    from app.engine.types import LoadedModel, LoadParams
    from app.hub import fit
    from app.model_file import read_model_file

    info = read_model_file(tiny_model)
    size, n_ctx, kv = memory_check._needs(info, 2048)
    needed = fit.estimate(size, n_ctx, Machine(10**12, 10**12), kv).needed
    params = LoadParams(context_length=2048)
    loaded = LoadedModel(str(tiny_model), "tiny", 2048, "model", "ChatML", 0)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(fit, "this_machine", machine_with(needed - 1))
        assert memory_check.refusal(str(tiny_model), params, None) is not None
        # Reloading it (another context length, say) frees what it holds first.
        assert memory_check.refusal(str(tiny_model), params, loaded) is None
        m.setattr(fit, "this_machine", machine_with(needed))
        assert memory_check.refusal(str(tiny_model), params, None) is None  # tight, but fits


def test_a_file_that_cannot_be_read_is_left_for_the_load_to_report(tmp_path: Path) -> None:
    from app.engine import memory_check
    from app.engine.types import LoadParams

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(64))
    assert memory_check.refusal(str(broken), LoadParams(), None) is None

"""What Hearth reads of this computer: cores, memory, GPUs, llama.cpp's build; and the fit
badges counting with the same figures."""

from __future__ import annotations

import os
import stat
import sys
import types
from pathlib import Path

import pytest

from app import hardware
from app.hardware import Gpu, LlamaBuild, Memory, Processor

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

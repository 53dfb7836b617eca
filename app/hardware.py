"""What this computer has for running models: processor, memory, GPUs, and the llama.cpp build.

One owner for these figures: the Settings → Hardware panel shows them, the "fits on this machine"
badges (app/hub/fit.py) and the check before a load use them, and the thread count defaults to
them. Memory and GPU figures are read fresh at each call (free memory changes); the processor and
the llama.cpp build are read once.

llama.cpp's own report (its version, the CPU features its kernels use, the backends and devices
it sees) comes from a short-lived child process: loading llama.cpp into the window's process
would start a GPU context there (CUDA builds) and take ~100 MB for the life of the window.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_DEFAULT_THREADS = 16  # past this, generation is bound by memory and more threads only contend
UNIFIED_MEMORY_SHARE = 0.75  # of RAM that macOS lets Metal use on Apple silicon (its working set)
REPORT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Gpu:
    name: str
    vram_total: int
    vram_free: int
    vendor: str  # "NVIDIA", "Apple"
    unified_memory: bool = False  # Apple silicon: the GPU's memory is the computer's RAM


@dataclass(frozen=True)
class Memory:
    total: int
    available: int


@dataclass(frozen=True)
class Processor:
    model: str
    architecture: str  # x86_64, arm64…
    physical_cores: int
    logical_cores: int
    performance_cores: int = 0  # Apple silicon's P-cores (0: not known, or not a hybrid chip)


@dataclass(frozen=True)
class Device:
    """A device llama.cpp's backends found (the CPU, a GPU…)."""

    name: str
    description: str
    kind: str  # "CPU", "GPU", "iGPU", "accelerator"
    memory_total: int
    memory_free: int


@dataclass(frozen=True)
class LlamaBuild:
    """llama.cpp as this install has it, in its own words (``llama_print_system_info`` &c.)."""

    bindings_version: str  # llama-cpp-python
    llama_version: str
    ggml_version: str
    ggml_commit: str
    cpu_features: tuple[str, ...]  # the instruction sets its CPU kernels use: AVX2, FMA, NEON…
    backends: tuple[str, ...]  # registered backends: ("CPU",), ("CUDA", "CPU")…
    devices: tuple[Device, ...] = ()
    gpu_offload: bool = False
    system_info: str = ""

    @property
    def gpu_backends(self) -> tuple[str, ...]:
        return tuple(b for b in self.backends if b not in ("CPU", "BLAS", "RPC"))

    def supports(self, backend: str) -> bool:
        return any(b.lower().startswith(backend.lower()) for b in self.backends)


@dataclass(frozen=True)
class Hardware:
    processor: Processor
    memory: Memory
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)


# The processor


@functools.cache
def processor() -> Processor:
    import psutil

    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    return Processor(
        model=cpu_model(),
        architecture=platform.machine() or "unknown",
        physical_cores=physical,
        logical_cores=logical,
        performance_cores=_sysctl_int("hw.perflevel0.physicalcpu")
        if sys.platform == "darwin"
        else 0,
    )


def cpu_model() -> str:
    """The processor's marketing name, e.g. "AMD Ryzen 7 7840U w/ Radeon 780M Graphics"."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
            for key in ("model name", "Model", "Hardware", "cpu model"):
                for line in text.splitlines():
                    name, _, value = line.partition(":")
                    if name.strip() == key and value.strip():
                        return value.strip()
    elif sys.platform == "darwin":
        name = _sysctl("machdep.cpu.brand_string")
        if name:
            return name
    elif sys.platform == "win32":
        with contextlib.suppress(OSError, ImportError):
            import winreg

            key = winreg.OpenKey(  # type: ignore[attr-defined,unused-ignore]
                winreg.HKEY_LOCAL_MACHINE,  # type: ignore[attr-defined,unused-ignore]
                r"HARDWARE\DESCRIPTION\System\CentralProcessor\0",
            )
            value = winreg.QueryValueEx(key, "ProcessorNameString")[0]  # type: ignore[attr-defined,unused-ignore]
            return str(value).strip()
    return platform.processor() or platform.machine() or "Unknown processor"


def _sysctl(name: str) -> str:
    try:
        out = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _sysctl_int(name: str) -> int:
    value = _sysctl(name)
    return int(value) if value.isdigit() else 0


def default_threads(cpu: Processor | None = None) -> int:
    """The CPU threads llama.cpp gets when Settings say "Automatic": one per physical core (the
    performance cores on Apple silicon), at most MAX_DEFAULT_THREADS. Generation is bound by
    memory bandwidth: hyper-threads and efficiency cores add contention, not speed (llama.cpp's
    own default is the same)."""
    cpu = cpu or processor()
    cores = cpu.performance_cores or cpu.physical_cores or cpu.logical_cores
    return max(1, min(cores, MAX_DEFAULT_THREADS))


# Memory and GPUs (fresh at every call)


def memory() -> Memory:
    import psutil

    mem = psutil.virtual_memory()
    return Memory(total=int(mem.total), available=int(mem.available))


def gpus(ram: Memory | None = None) -> tuple[Gpu, ...]:
    """The GPUs and their memory: NVIDIA's through NVML (the nvidia-ml-py package) or, without
    it, nvidia-smi; Apple silicon's GPU, which shares the RAM. () when there is none we can
    read."""
    if sys.platform == "darwin" and platform.machine() == "arm64":
        ram = ram or memory()
        return (
            Gpu(
                name="Apple GPU",
                vram_total=int(ram.total * UNIFIED_MEMORY_SHARE),
                vram_free=min(ram.available, int(ram.total * UNIFIED_MEMORY_SHARE)),
                vendor="Apple",
                unified_memory=True,
            ),
        )
    return _nvml_gpus() or _nvidia_smi_gpus()


def _nvml_gpus() -> tuple[Gpu, ...]:
    try:
        import pynvml  # type: ignore[import-not-found,unused-ignore]  # nvidia-ml-py, optional
    except ImportError:
        return ()
    try:
        pynvml.nvmlInit()
    except Exception as e:  # no driver, no GPU: NVMLError of many kinds
        log.debug("NVML unavailable: %s", e)
        return ()
    found: list[Gpu] = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            found.append(
                Gpu(
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    vram_total=int(info.total),
                    vram_free=int(info.free),
                    vendor="NVIDIA",
                )
            )
    except Exception as e:
        log.info("NVML could not list the GPUs: %s", e)
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return tuple(found)


def _nvidia_smi_gpus() -> tuple[Gpu, ...]:
    import shutil

    smi = shutil.which("nvidia-smi")
    if not smi:
        return ()
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        log.info("nvidia-smi gave no memory figures: %s", e)
        return ()
    found: list[Gpu] = []
    for line in out.splitlines():
        with contextlib.suppress(ValueError):
            name, total, free = (part.strip() for part in line.rsplit(",", 2))
            mib = 1024 * 1024
            found.append(Gpu(name, int(total) * mib, int(free) * mib, "NVIDIA"))
    return tuple(found)


def hardware() -> Hardware:
    ram = memory()
    return Hardware(processor(), ram, gpus(ram))


# The llama.cpp build (from a child process)

_DEVICE_KINDS = {0: "CPU", 1: "GPU", 2: "iGPU", 3: "accelerator"}


def parse_system_info(text: str) -> tuple[str, ...]:
    """The CPU features a ``llama_print_system_info`` string reports as used ("AVX2 = 1" in its
    "CPU :" section), without the build switches that are not instruction sets.

    The string is sections of ``NAME : KEY = VALUE | KEY = VALUE |``, one per backend, e.g.
    ``CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX2 = 1 | OPENMP = 1 |``.
    """
    not_isa = {"LLAMAFILE", "OPENMP", "REPACK", "KLEIDIAI", "ACCELERATE", "BLAS"}
    features: list[str] = []
    section = ""
    for part in text.split("|"):
        if ":" in part:
            section, _, part = part.rpartition(":")
            section = section.strip()
        name, eq, value = part.partition("=")
        name = name.strip()
        if section == "CPU" and eq and value.strip() == "1" and name not in not_isa:
            features.append(name)
    return tuple(dict.fromkeys(features))


def _report_in_child(conn: Any) -> None:
    """Runs in the child process: llama.cpp's own report, sent as a plain dict."""
    try:
        conn.send(_report())
    except Exception as e:  # the parent shows "unknown" and logs this
        conn.send({"error": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


def _report() -> dict[str, Any]:
    import ctypes

    from app.engine.native import llama

    lib = llama()  # its log goes through our callback, never to a stderr that may not exist
    try:  # llama-cpp-python's handle on libggml: private, so the report does without it if gone
        from llama_cpp import _ggml

        ggml: Any = _ggml.libggml
    except (ImportError, AttributeError):
        ggml = None

    def text(fn: str, *args: Any, argtypes: list[Any] | None = None) -> str:
        f = getattr(ggml, fn, None) if ggml is not None else None
        if f is None:
            return ""
        f.restype = ctypes.c_char_p
        f.argtypes = argtypes or []
        value = f(*args)
        return value.decode("utf-8", "replace") if value else ""

    backends: list[str] = []
    if ggml is not None and hasattr(ggml, "ggml_backend_reg_count"):
        ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
        ggml.ggml_backend_reg_get.restype = ctypes.c_void_p
        ggml.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
        for i in range(ggml.ggml_backend_reg_count()):
            reg = ggml.ggml_backend_reg_get(i)
            backends.append(text("ggml_backend_reg_name", reg, argtypes=[ctypes.c_void_p]))
    devices: list[dict[str, Any]] = []
    if ggml is not None and hasattr(ggml, "ggml_backend_dev_count"):
        ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
        ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
        ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        ggml.ggml_backend_dev_type.restype = ctypes.c_int
        ggml.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        ggml.ggml_backend_dev_memory.restype = None
        ggml.ggml_backend_dev_memory.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_size_t),
        ]
        for i in range(ggml.ggml_backend_dev_count()):
            dev = ggml.ggml_backend_dev_get(i)
            free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
            ggml.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
            devices.append(
                {
                    "name": text("ggml_backend_dev_name", dev, argtypes=[ctypes.c_void_p]),
                    "description": text(
                        "ggml_backend_dev_description", dev, argtypes=[ctypes.c_void_p]
                    ),
                    "kind": _DEVICE_KINDS.get(ggml.ggml_backend_dev_type(dev), "other"),
                    "memory_total": int(total.value),
                    "memory_free": int(free.value),
                }
            )
    version = getattr(lib, "llama_version", None)
    return {
        "bindings_version": str(getattr(lib, "__version__", "")),
        "llama_version": version().decode() if callable(version) else "",
        "ggml_version": text("ggml_version"),
        "ggml_commit": text("ggml_commit"),
        "system_info": lib.llama_print_system_info().decode("utf-8", "replace"),
        "backends": backends,
        "devices": devices,
        "gpu_offload": bool(lib.llama_supports_gpu_offload()),
    }


_build: LlamaBuild | None = None
_build_lock = threading.Lock()  # the panel and the About dialog may ask at once: one child


class BuildUnknown(Exception):
    """llama.cpp's report could not be had; ``str(e)`` says why."""


def llama_build(timeout_s: float = REPORT_TIMEOUT_S) -> LlamaBuild:
    """llama.cpp's report of itself (read once, in a child process; ~1 s). Call it off the GUI
    thread.

    Raises:
        BuildUnknown: the child failed, crashed or took longer than ``timeout_s``.
    """
    global _build
    with _build_lock:
        if _build is None:
            _build = build_from_report(_report_from_child(timeout_s))
        return _build


def _report_from_child(timeout_s: float) -> dict[str, Any]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # as the engine process: works in a frozen app too
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_report_in_child, args=(child,), name="hearth-llama-report", daemon=True
    )
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise BuildUnknown(f"llama.cpp did not answer within {timeout_s:.0f} s")
        report: dict[str, Any] = parent.recv()
    except EOFError:
        raise BuildUnknown("llama.cpp's report process ended without a word") from None
    finally:
        parent.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if "error" in report:
        raise BuildUnknown(f"llama.cpp could not be read: {report['error']}")
    return report


def build_from_report(report: dict[str, Any]) -> LlamaBuild:
    return LlamaBuild(
        bindings_version=str(report.get("bindings_version", "")),
        llama_version=str(report.get("llama_version", "")),
        ggml_version=str(report.get("ggml_version", "")),
        ggml_commit=str(report.get("ggml_commit", "")),
        cpu_features=parse_system_info(str(report.get("system_info", ""))),
        backends=tuple(str(b) for b in report.get("backends", [])),
        devices=tuple(Device(**d) for d in report.get("devices", [])),
        gpu_offload=bool(report.get("gpu_offload", False)),
        system_info=str(report.get("system_info", "")),
    )


def backend_in_use(build: LlamaBuild, found: tuple[Gpu, ...], gpu_layers: int) -> str:
    """Where a model's layers run with these settings, in words: "CUDA (NVIDIA RTX 4070)",
    "Metal (Apple GPU)", "CPU"."""
    gpu_devices = [d for d in build.devices if d.kind in ("GPU", "iGPU")]
    if build.gpu_backends and gpu_layers != 0 and (gpu_devices or found):
        where = gpu_devices[0].description if gpu_devices else found[0].name
        return f"{build.gpu_backends[0]} ({where})"
    return "CPU"

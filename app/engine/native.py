"""The llama.cpp native library: loading it and a model's weights, routing its log.

Loaded on first use, not at import: the library is large and the GUI starts without it. Its log
goes into Python's logging (logger ``llama.cpp``), never to stderr, which a frozen app may not
have. The fault injection here lets tests and benchmarks crash the engine process the way
llama.cpp's CPU kernels crash on some processors (see app/engine/cpu_safety.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from app.engine.types import EngineError

log = logging.getLogger(__name__)
_native_log = logging.getLogger("llama.cpp")

_lib: ModuleType | None = None
_log_callback: Any = None  # kept alive: llama.cpp calls it for as long as the process runs
_log_buffer: list[str] = []  # pieces of a line llama.cpp has not finished yet
# ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continues the previous line
_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_last_level = [logging.DEBUG]

# Fault injection for tests and benchmarks, the way llama.cpp's AMX kernels crash in some VMs:
# SIGILL "evaluate" (at the first batch of more than one token) or "load", outside safe CPU mode;
# with ":always", in safe mode too, as a build for another processor would. Read once, at import:
# the engine process is spawned with it in its environment.
INJECTED_FAULT = os.environ.get("HEARTH_INJECT_CPU_FAULT", "")


def inject_fault(where: str, safe_cpu: bool) -> None:
    """Die of SIGILL here when HEARTH_INJECT_CPU_FAULT asks for ``where`` in this CPU mode; with
    ``:abort``, of SIGABRT in any mode (what a GGML_ASSERT on a bad file does); with ``:exit``,
    exit with status 1 (the process itself failing, as a broken install would)."""
    place, _, when = INJECTED_FAULT.partition(":")
    if place == where and when == "exit":
        log.warning("injecting an exit (HEARTH_INJECT_CPU_FAULT)")
        logging.shutdown()
        os._exit(1)
    if place == where and when == "abort":
        log.warning("injecting an abort (HEARTH_INJECT_CPU_FAULT)")
        logging.shutdown()
        signal.raise_signal(signal.SIGABRT)
    if place == where and (when == "always" or not safe_cpu):
        log.warning("injecting an illegal-instruction fault (HEARTH_INJECT_CPU_FAULT)")
        logging.shutdown()
        signal.raise_signal(signal.SIGILL)


def llama() -> ModuleType:
    """Import llama-cpp-python on first use: its large native library is not needed at startup."""
    global _lib, _log_callback
    if _lib is None:
        import llama_cpp

        # llama.cpp's own log goes into our log file, never to stderr (a frozen app may have none).
        def on_log(level: int, text: bytes, _user: Any) -> None:
            if level != 5:
                _last_level[0] = _LEVELS.get(level, logging.DEBUG)
            _log_buffer.append(text.decode("utf-8", "replace"))
            if _log_buffer[-1].endswith("\n"):
                line = "".join(_log_buffer).rstrip()
                _log_buffer.clear()
                _native_log.log(_last_level[0], "%s", line)

        _log_callback = llama_cpp.llama_log_callback(on_log)
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _lib = llama_cpp
    return _lib


def supports_gpu_offload() -> bool:
    """Whether this build of llama.cpp can put layers on a GPU (CUDA, Metal, Vulkan...)."""
    return bool(llama().llama_supports_gpu_offload())


def load_model(path: str, gpu_layers: int, safe_cpu: bool, cancel: threading.Event | None) -> Any:
    """Load a GGUF file's weights, ``gpu_layers`` of them onto the GPU: the llama_model pointer.

    Raises:
        EngineError: llama.cpp could not load the file, or ``cancel`` was set while it loaded.
    """
    lib = llama()
    mparams = lib.llama_model_default_params()
    mparams.n_gpu_layers = gpu_layers
    # Safe CPU mode: the plain CPU kernels only (see app/engine/cpu_safety.py).
    mparams.use_extra_bufts = not safe_cpu
    if INJECTED_FAULT:
        inject_fault("load", safe_cpu)
    if cancel is not None:

        def on_progress(_progress: float, _user: Any) -> bool:
            return not cancel.is_set()

        progress_cb = lib.llama_progress_callback(on_progress)  # alive until loading ends
        mparams.progress_callback = progress_cb
    model = lib.llama_model_load_from_file(path.encode(), mparams)
    if not model:
        if cancel is not None and cancel.is_set():
            raise EngineError("Loading was cancelled.")
        raise EngineError(
            f"llama.cpp could not load {Path(path).name} (see the log for its reason). "
            "The architecture may be too new for this llama.cpp, or memory ran out."
        )
    return model


def release_freed_memory() -> None:
    """Hand memory freed by an unload back to the system (glibc keeps it for reuse otherwise:
    measured with SmolLM2, 17 of the 130 MB a load took stayed with the process)."""
    if sys.platform.startswith("linux"):
        # AttributeError: not glibc (musl has no malloc_trim)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)

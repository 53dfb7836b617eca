"""Safe CPU mode: what Hearth does when llama.cpp's CPU kernels fault on this processor.

Some builds of llama.cpp crash on CPUs they were not made for, or in virtual machines that
advertise instructions they do not run: on an Intel Xeon with AMX in a VM, llama.cpp's AMX matrix
kernels die with SIGILL on the first prompt of more than one token. Those kernels live in
llama.cpp's "extra buffer types" (weights repacked for a CPU's special instructions); loading a
model without them runs on the plain CPU kernels, which are slower where the extra ones work but
fault nowhere they would not.

When the engine process dies from such a signal, the process engine (``app/engine/process.py``)
loads the model again in safe mode and, if that works, remembers it here for this processor and
this build of llama.cpp, so later loads start safe at once. A new processor or a rebuilt
llama.cpp starts fast again, since the fault may be gone.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import platform
import re
import signal
import time
from pathlib import Path

from app.fileio import JsonRecords

log = logging.getLogger(__name__)

# Exit codes of a process killed by a fault of the code it ran (multiprocessing reports a signal
# as its negative number; Windows reports the exception status).
_FAULT_SIGNALS = {
    -getattr(signal, name)
    for name in ("SIGILL", "SIGSEGV", "SIGBUS", "SIGFPE")
    if hasattr(signal, name)
}
_WINDOWS_FAULTS = {
    0xC000001D,  # STATUS_ILLEGAL_INSTRUCTION
    0xC0000096,  # STATUS_PRIVILEGED_INSTRUCTION
    0xC0000005,  # STATUS_ACCESS_VIOLATION
}
SIGILL_EXIT = -int(getattr(signal, "SIGILL", 4))

SAFE_MODE_NOTICE = (
    "llama.cpp crashed on this processor, so Hearth now runs models in safe CPU mode (without "
    "the special matrix kernels that crashed). Replies keep coming; on some processors they are "
    "slower — up to about 3× — until llama.cpp is rebuilt or updated."
)
DOES_NOT_FIT = (
    "This build of llama.cpp does not work on this processor: it crashed even in safe CPU mode. "
    "Rebuild it for this machine: .venv/bin/pip install --force-reinstall --no-cache-dir "
    "llama-cpp-python (see the README's Troubleshooting, “Illegal instruction”)."
)


# The rebuild that gives a GCC-built llama.cpp working AMX kernels (see ``amx_build_fault``):
# without dead-store elimination the tile configuration is written before it is loaded.
AMX_REBUILD = (
    "CMAKE_ARGS=\"-DCMAKE_C_FLAGS='-fno-tree-dse -fno-dse' "
    "-DCMAKE_CXX_FLAGS='-fno-tree-dse -fno-dse'\" .venv/bin/pip install --force-reinstall "
    "--no-cache-dir --no-deps llama-cpp-python"
)
_GCC = re.compile(rb"GCC: \([^)]*\) (\d+\.\d+(?:\.\d+)?)")


def amx_build_fault(cpu_flags: str | None = None, lib_dir: Path | None = None) -> str:
    """Why llama.cpp's fast kernels fault on this machine, where it is the known cause; ""
    otherwise.

    The known cause (found on an Intel Xeon with AMX, Debian 12): GCC's ``_tile_loadconfig``
    tells the compiler it reads 8 of the tile configuration's 64 bytes, so at -O2 the stores
    of the tile shapes are dropped as dead and ``ldtilecfg`` loads garbage: the AMX kernels
    fault (SIGSEGV, SIGILL) on the first prompt of more than one token. GCC 12.2 does this;
    clang and later GCC releases use a builtin that reads all 64 bytes.

    Args:
        cpu_flags: the processor's flags (``/proc/cpuinfo``), read when not given.
        lib_dir: llama-cpp-python's native libraries, found when not given.
    """
    if cpu_flags is None:
        cpu_flags = processor_identity()
    if "amx_tile" not in cpu_flags.split():
        return ""
    if lib_dir is None:
        lib_dir = _llama_lib_dir()
    if lib_dir is None:
        return ""
    try:
        libraries = sorted(lib_dir.glob("libggml-cpu*"))
        for library in libraries:
            if library.is_symlink() or not library.is_file():
                continue
            data = library.read_bytes()
            compiler = _GCC.search(data)
            if b"ggml_backend_amx_buffer_type" in data and compiler:
                version = compiler.group(1).decode()
                return (
                    f"Here the cause is known: llama.cpp was compiled by GCC {version}, which "
                    "drops the AMX kernels' tile configuration. Rebuilt as the README says "
                    "(Troubleshooting, “AMX”), it runs them: on such a processor prompts came 3–4× "
                    "and replies 2× faster."
                )
    except OSError:
        pass
    return ""


def safe_mode_notice() -> str:
    """What the user hears once when safe CPU mode takes over: why, and the cause where known."""
    cause = amx_build_fault()
    return f"{SAFE_MODE_NOTICE} {cause}" if cause else SAFE_MODE_NOTICE


def is_cpu_fault(exitcode: int | None) -> bool:
    """Whether a process with this exit code died from a fault in the machine code it ran
    (illegal instruction, bad memory access, arithmetic trap), as opposed to an abort, a kill or
    a normal exit."""
    if exitcode is None:
        return False
    return exitcode in _FAULT_SIGNALS or (exitcode & 0xFFFFFFFF) in _WINDOWS_FAULTS


def processor_identity() -> str:
    """The processor as far as llama.cpp's choice of kernels goes: model and instruction sets."""
    parts = [platform.machine(), platform.processor()]
    cpuinfo = Path("/proc/cpuinfo")
    try:
        wanted = ("model name", "flags", "Features", "CPU part")
        seen: dict[str, str] = {}
        with cpuinfo.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in wanted and key not in seen:
                    seen[key] = " ".join(sorted(value.split())) if key != "model name" else value
                if len(seen) == len(wanted) or (not line.strip() and seen):
                    break
        parts += [seen.get(k, "").strip() for k in wanted]
    except OSError:
        pass
    return " | ".join(parts)


def llama_build_identity() -> str:
    """The installed llama.cpp build: llama-cpp-python's version and its native libraries' sizes
    and times, found without importing (and so loading) them."""
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    parts = [version]
    lib = _llama_lib_dir()
    if lib is not None:
        try:
            for f in sorted(lib.iterdir()):
                st = f.stat()
                parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
        except OSError:
            pass
    return " | ".join(parts)


def _llama_lib_dir() -> Path | None:
    """llama-cpp-python's folder of native libraries, found without importing it."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def machine_key() -> str:
    """One key for this processor and this llama.cpp build."""
    text = processor_identity() + " || " + llama_build_identity()
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class SafeModeMemory:
    """Which (processor, llama.cpp build) pairs need safe CPU mode, kept in a small JSON file."""

    def __init__(self, path: Path, key: str | None = None) -> None:
        self.path = path
        self._file = JsonRecords(path, "machines")
        self._key = key
        self._this_session = False  # remembered even where the file cannot be written

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = machine_key()
        return self._key

    def needed(self) -> bool:
        return self._this_session or self.key in self._file.load()

    def remember(self, reason: str) -> None:
        self._this_session = True
        entries = self._file.load()
        entries[self.key] = {
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "reason": reason,
            "processor": processor_identity(),
            "llama_cpp": llama_build_identity().split(" | ")[0],
        }
        self._write(entries)
        log.warning("safe CPU mode remembered for this processor and llama.cpp build: %s", reason)

    def forget(self) -> None:
        self._this_session = False
        entries = self._file.load()
        if entries.pop(self.key, None) is not None:
            self._write(entries)

    def _write(self, entries: dict[str, dict[str, object]]) -> None:
        try:
            self._file.save(entries)
        except OSError as e:  # a read-only home: safe mode then lasts until Hearth quits
            log.warning("could not save safe CPU mode to %s: %s", self.path, e)

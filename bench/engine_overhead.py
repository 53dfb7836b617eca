"""Generation speed through Hearth's real path vs llama.cpp's own llama-bench (and vs llama-cpp-python).

Hearth's path: the engine thread, delta coalescing, signals into the chat page's model and its
rendered view, with a Qt event loop running offscreen. Runs are interleaved; medians of >= 5.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import (
    bench_engine,
    choose_cpu_mode,
    deadline,
    end_engine_processes,
    fail,
    figure,
    llama_bench_tg,
    machine,
    median,
    model_path,
    parser,
    safe_cpu,
)

PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm."
REPLY_SECONDS = 300  # to load the model and generate one reply (the 1.2B model: ~7 tokens/s)
# In which CPU mode each contender ran (Hearth's engine falls back to safe CPU mode by itself).
modes: dict[str, set[bool]] = {}


def hearth_path(model: Path, threads: int, n_gen: int) -> tuple[float, int]:
    """Tokens/s through the real GUI path, and the prompt's length in tokens."""
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from app.chats.store import ChatStore
    from app.context import AppContext
    from app.settings import Sampling
    from ui.chat_page import ChatPage
    from ui.engine_controller import EngineController

    _app = QApplication.instance() or QApplication([])
    ctx = AppContext.open()
    ctx.settings.threads = threads
    ctx.settings.sampling = Sampling(temperature=0, max_tokens=n_gen, repeat_penalty=1.0)
    store = ChatStore(":memory:")
    engine = EngineController(lambda: bench_engine(safe_cpu()))
    page = ChatPage(ctx, store, engine)
    page.resize(1000, 800)
    page.show()
    done: list[tuple[float, int]] = []
    failures: list[str] = []
    loaded_safe: list[bool] = []
    # Block in a real event loop, as the app does (polling would steal CPU and the GIL).
    loop = QEventLoop()

    def loaded(info: object) -> None:
        loaded_safe.append(getattr(info, "safe_cpu", False))

    def finished(stats: object) -> None:
        ok = getattr(stats, "generated_tokens", 0) > 8
        tps = getattr(stats, "tokens_per_second", 0.0) if ok else -1.0
        done.append((tps, getattr(stats, "prompt_tokens", 0)))
        if getattr(stats, "notice", ""):  # it fell back to safe CPU mode while replying
            loaded_safe.append(True)

    def load_failed(_path: str, message: str) -> None:
        failures.append(f"the model did not load: {message}")
        loop.quit()

    def reply_failed(message: str) -> None:
        failures.append(f"the reply failed: {message}")
        loop.quit()

    engine.model_loaded.connect(loaded)
    engine.model_load_failed.connect(load_failed)
    engine.reply_finished.connect(finished)
    engine.reply_failed.connect(reply_failed)
    engine.reply_finished.connect(loop.quit)
    page.set_models([ctx.library.find(str(model))])  # selects and loads it
    page.input.setPlainText(PROMPT)
    page.send()
    QTimer.singleShot(REPLY_SECONDS * 1000, loop.quit)
    if not done and not failures:
        loop.exec()
    if not done and not failures:
        failures.append(f"no reply within {REPLY_SECONDS} s")
        end_engine_processes()  # the engine may be stuck; its thread then ends
    with deadline(30, "the engine did not shut down"):
        engine.shutdown()
    page.close()
    page.deleteLater()
    store.close()
    if failures:
        fail(f"Hearth (GUI path): {failures[0]}")
    modes.setdefault("hearth", set()).add(any(loaded_safe))
    return done[0]


def engine_only(model: Path, threads: int, n_gen: int) -> float:
    """Hearth's engine process without Qt, read by a plain loop: separates the engine from the GUI."""
    from app.engine.types import EngineError, LoadParams
    from app.settings import Sampling

    engine = bench_engine()
    params = LoadParams(context_length=4096, threads=threads, safe_cpu=safe_cpu())
    sampling = Sampling(temperature=0, max_tokens=n_gen, repeat_penalty=1.0)
    # The pipe to the engine process has no timeout of its own.
    with deadline(REPLY_SECONDS, "Hearth's engine without the GUI"):
        try:
            engine.load(str(model), params)
            reply = engine.chat([{"role": "user", "content": PROMPT}], sampling, threading.Event())
            list(reply)
        except EngineError as e:
            engine.close()
            fail(f"Hearth's engine without the GUI: {e}")
        modes.setdefault("hearth engine", set()).add(bool(engine.loaded and engine.loaded.safe_cpu))
        engine.close()
    return reply.stats.tokens_per_second if reply.stats.generated_tokens > 8 else -1


def direct(model: Path, threads: int, n_gen: int, flash: bool) -> float:
    import llama_cpp.llama_cpp as low_level
    from llama_cpp import Llama

    # Llama() has no option for llama.cpp's extra buffer types: safe CPU mode goes through the
    # model parameters it starts from.
    default_params = low_level.llama_model_default_params

    def safe_params() -> object:
        params = default_params()
        params.use_extra_bufts = False
        return params

    if safe_cpu():
        low_level.llama_model_default_params = safe_params
    try:
        llm = Llama(
            str(model),
            n_ctx=4096,
            n_threads=threads,
            n_threads_batch=threads,
            flash_attn=flash,
            verbose=False,
        )
    finally:
        low_level.llama_model_default_params = default_params
    modes.setdefault("llama-cpp-python", set()).add(not llm.model_params.use_extra_bufts)
    # The same chat-formatted prompt Hearth sends, so both generate the same kind of text.
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from app.engine.templates import resolve_template
    from app.model_file import read_model_file

    template, _, _ = resolve_template(read_model_file(model).chat_template, "")
    formatter = Jinja2ChatFormatter(template, eos_token="", bos_token="")
    prompt = formatter(messages=[{"role": "user", "content": PROMPT}]).prompt
    first = last = 0.0
    n = 0
    for _chunk in llm.create_completion(
        prompt, max_tokens=n_gen, temperature=0, repeat_penalty=1.0, stream=True
    ):
        n += 1
        last = time.perf_counter()
        if n == 1:
            first = last
    llm.close()
    return (n - 1) / (last - first) if n > 8 else -1


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    model = model_path(args.model)
    n_gen = 64 if args.quick else 128
    runs = 5 if args.quick else 9
    print(f"model {model.name}, {args.threads} threads, {n_gen} tokens, {runs} interleaved runs")
    print(machine())
    from app.engine.llama_cpp_engine import supports_gpu_offload

    # The same flash-attention choice Hearth makes by default (on with a GPU, off on the CPU),
    # and llama-bench generating after as many tokens as Hearth's prompt holds.
    flash = supports_gpu_offload()
    # Both sides in the same CPU mode: safe where llama.cpp's extra buffer types crash here.
    choose_cpu_mode(model, args.threads, flash)
    depth = hearth_path(model, args.threads, 8)[1]  # the prompt's length, for llama-bench's depth
    results: dict[str, list[float]] = {
        "llama-bench": [],
        "llama-cpp-python": [],
        "hearth engine": [],
        "hearth": [],
    }
    for i in range(runs):
        order = [
            lambda: results["hearth"].append(hearth_path(model, args.threads, n_gen)[0]),
            lambda: results["llama-bench"].append(
                llama_bench_tg(model, args.threads, n_gen, flash, depth)
            ),
            lambda: results["llama-cpp-python"].append(direct(model, args.threads, n_gen, flash)),
            lambda: results["hearth engine"].append(engine_only(model, args.threads, n_gen)),
        ]
        for run in order if i % 2 == 0 else order[::-1]:  # nobody always goes first
            run()
        print(
            f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in results.items()), flush=True
        )
    modes["llama-bench"] = {safe_cpu()}
    shown = {k: "/".join("safe" if m else "fast" for m in sorted(v)) for k, v in modes.items()}
    print("CPU mode of each contender: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    if len(set(shown.values())) > 1:
        print("warning: the contenders did not all run in the same CPU mode", file=sys.stderr)
    med = {k: median([x for x in v if x > 0]) for k, v in results.items()}
    for k, v in med.items():
        print(f"median tokens/s {k}: {v:.1f}")

    # This machine's speed drifts between runs more than the differences measured here, so each
    # run's contenders (measured back to back) are compared with each other, then the median taken.
    def paired(a: str, b: str) -> float:
        pairs = zip(results[a], results[b], strict=True)
        return median([x / y for x, y in pairs if x > 0 and y > 0])

    print(
        f"hearth / llama-cpp-python (median of paired runs): {paired('hearth', 'llama-cpp-python'):.3f}"
    )
    print(
        f"hearth engine without the GUI / llama-bench: {paired('hearth engine', 'llama-bench'):.3f}"
    )
    print(f"hearth / hearth engine without the GUI: {paired('hearth', 'hearth engine'):.3f}")
    figure("hearth / llama-bench tg", paired("hearth", "llama-bench"), ">= 0.95")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()

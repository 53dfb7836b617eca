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
from bench._common import figure, llama_bench_tg, machine, median, model_path, parser

PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm."


def hearth_path(model: Path, threads: int, n_gen: int) -> tuple[float, int]:
    """Tokens/s through the real GUI path, and the prompt's length in tokens."""
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from app.chats.store import ChatStore
    from app.context import AppContext
    from app.settings import Sampling
    from ui.application import create_engine
    from ui.chat_page import ChatPage
    from ui.engine_controller import EngineController

    _app = QApplication.instance() or QApplication([])
    ctx = AppContext.open()
    ctx.settings.threads = threads
    ctx.settings.sampling = Sampling(temperature=0, max_tokens=n_gen, repeat_penalty=1.0)
    store = ChatStore(":memory:")
    engine = EngineController(create_engine)
    page = ChatPage(ctx, store, engine)
    page.resize(1000, 800)
    page.show()
    done: list[tuple[float, int]] = []

    def finished(stats: object) -> None:
        ok = getattr(stats, "generated_tokens", 0) > 8
        tps = getattr(stats, "tokens_per_second", 0.0) if ok else -1.0
        done.append((tps, getattr(stats, "prompt_tokens", 0)))

    engine.reply_finished.connect(finished)
    engine.reply_failed.connect(lambda m: done.append((-1.0, 0)))
    page.set_models([ctx.library.find(str(model))])  # selects and loads it
    page.input.setPlainText(PROMPT)
    page.send()
    # Block in a real event loop, as the app does (polling would steal CPU and the GIL).
    loop = QEventLoop()
    engine.reply_finished.connect(loop.quit)
    engine.reply_failed.connect(loop.quit)
    if not done:
        loop.exec()
    engine.shutdown()
    page.close()
    page.deleteLater()
    store.close()
    return done[0]


def engine_only(model: Path, threads: int, n_gen: int) -> float:
    """Hearth's engine process without Qt, read by a plain loop: separates the engine from the GUI."""
    from app.engine.process import ProcessEngine
    from app.engine.types import LoadParams
    from app.settings import Sampling

    engine = ProcessEngine()
    engine.load(str(model), LoadParams(context_length=4096, threads=threads))
    sampling = Sampling(temperature=0, max_tokens=n_gen, repeat_penalty=1.0)
    reply = engine.chat([{"role": "user", "content": PROMPT}], sampling, threading.Event())
    list(reply)
    engine.close()
    return reply.stats.tokens_per_second if reply.stats.generated_tokens > 8 else -1


def direct(model: Path, threads: int, n_gen: int, flash: bool) -> float:
    from llama_cpp import Llama

    llm = Llama(
        str(model),
        n_ctx=4096,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=flash,
        verbose=False,
    )
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

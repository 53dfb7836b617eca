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


def hearth_path(model: Path, threads: int, n_gen: int) -> float:
    from PySide6.QtWidgets import QApplication

    from app.chats.store import ChatStore
    from app.context import AppContext
    from app.settings import Sampling
    from ui.application import create_engine
    from ui.chat_page import ChatPage
    from ui.engine_controller import EngineController

    app = QApplication.instance() or QApplication([])
    ctx = AppContext.open()
    ctx.settings.threads = threads
    ctx.settings.sampling = Sampling(temperature=0, max_tokens=n_gen, repeat_penalty=1.0)
    store = ChatStore(":memory:")
    engine = EngineController(create_engine)
    page = ChatPage(ctx, store, engine)
    page.resize(1000, 800)
    page.show()
    done: list[float] = []

    def finished(stats: object) -> None:
        done.append(
            getattr(stats, "tokens_per_second", 0.0)
            if getattr(stats, "generated_tokens", 0) > 8
            else -1
        )

    engine.reply_finished.connect(finished)
    engine.reply_failed.connect(lambda m: done.append(-1))
    page.set_models([ctx.library.find(str(model))])  # selects and loads it
    page.input.setPlainText(PROMPT)
    page.send()
    while not done:
        app.processEvents()
        time.sleep(0.001)
    engine.shutdown()
    page.close()
    page.deleteLater()
    store.close()
    return done[0]


def direct(model: Path, threads: int, n_gen: int) -> float:
    from llama_cpp import Llama

    llm = Llama(
        str(model),
        n_ctx=4096,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=True,
        verbose=False,
    )
    first = last = 0.0
    n = 0
    for _chunk in llm.create_completion(
        PROMPT, max_tokens=n_gen, temperature=0, repeat_penalty=1.0, stream=True
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
    runs = 5
    print(
        f"model {model.name}, {args.threads} threads, {n_gen} tokens, {runs} interleaved runs; {machine()}"
    )
    results: dict[str, list[float]] = {"llama-bench": [], "llama-cpp-python": [], "hearth": []}
    for i in range(runs):
        results["llama-bench"].append(llama_bench_tg(model, args.threads, n_gen))
        results["llama-cpp-python"].append(direct(model, args.threads, n_gen))
        results["hearth"].append(hearth_path(model, args.threads, n_gen))
        print(
            f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in results.items()), flush=True
        )
    med = {k: median([x for x in v if x > 0]) for k, v in results.items()}
    for k, v in med.items():
        print(f"median tokens/s {k}: {v:.1f}")
    print(f"hearth / llama-cpp-python: {med['hearth'] / med['llama-cpp-python']:.3f}")
    figure("hearth / llama-bench tg", med["hearth"] / med["llama-bench"], ">= 0.95")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()

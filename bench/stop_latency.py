"""Seconds from pressing Stop to the engine being idle: while generating, and while a ~4k-token
prompt is being evaluated. Measured through the GUI's engine controller and event loop."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import figure, machine, median, model_path, parser


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    from PySide6.QtWidgets import QApplication

    from app.engine.types import LoadParams
    from app.settings import Sampling
    from ui.application import create_engine
    from ui.engine_controller import EngineController

    app = QApplication.instance() or QApplication([])
    model = model_path(args.model)
    print(f"model {model.name}, {args.threads} threads; {machine()}")
    engine = EngineController(create_engine)
    loaded: list[object] = []
    engine.model_loaded.connect(loaded.append)
    engine.load(str(model), LoadParams(context_length=8192, threads=args.threads))
    while not loaded:
        app.processEvents()
        time.sleep(0.001)

    def measure(messages: list[dict[str, str]], stop_when: str) -> float:
        deltas: list[str] = []
        done: list[object] = []
        engine.reply_delta.connect(deltas.append)
        engine.reply_finished.connect(done.append)
        engine.reply_failed.connect(done.append)
        started = time.perf_counter()
        engine.generate(messages, Sampling(temperature=0, max_tokens=2000, repeat_penalty=1.0))  # type: ignore[arg-type]
        while True:
            app.processEvents()
            if stop_when == "generating" and len(deltas) >= 5:
                break
            if stop_when == "prompt" and time.perf_counter() - started > 0.25:
                assert not deltas, "the prompt was evaluated before Stop; use a longer one"
                break
            time.sleep(0.0005)
        pressed = time.perf_counter()
        engine.stop()
        while not done:
            app.processEvents()
            time.sleep(0.0005)
        elapsed = time.perf_counter() - pressed
        engine.reply_delta.disconnect(deltas.append)
        engine.reply_finished.disconnect(done.append)
        engine.reply_failed.disconnect(done.append)
        return elapsed

    runs = 3 if args.quick else 5
    gen = [
        measure(
            [{"role": "user", "content": "Write a very long essay about rivers."}], "generating"
        )
        for _ in range(runs)
    ]
    # ~4k tokens of varied text: nothing in the KV cache can be reused between runs (each differs).
    prompts = [
        [
            {
                "role": "user",
                "content": " ".join(f"item{j}-{i} is a word" for j in range(800)) + " Summarise.",
            }
        ]
        for i in range(runs)
    ]
    prompt = [measure(p, "prompt") for p in prompts]
    engine.shutdown()
    print(
        f"stop while generating: median {median(gen) * 1000:.1f} ms, max {max(gen) * 1000:.1f} ms"
    )
    print(
        f"stop during prompt evaluation: median {median(prompt) * 1000:.1f} ms, max {max(prompt) * 1000:.1f} ms"
    )
    figure("stop latency, worst of both medians (s)", max(median(gen), median(prompt)), "<= 0.3")


if __name__ == "__main__":
    main()

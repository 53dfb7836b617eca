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
    from PySide6.QtCore import QEventLoop, QObject, QTimer, Slot
    from PySide6.QtWidgets import QApplication

    from app.engine.types import LoadParams
    from app.settings import Sampling
    from ui.application import create_engine
    from ui.engine_controller import EngineController

    _app = QApplication.instance() or QApplication([])
    model = model_path(args.model)
    print(f"model {model.name}, {args.threads} threads; {machine()}")
    engine = EngineController(create_engine)
    ready = QEventLoop()
    engine.model_loaded.connect(ready.quit)
    engine.load(str(model), LoadParams(context_length=8192, threads=args.threads))
    ready.exec()

    # Cross-thread signals go to bound methods of a QObject, and waiting happens in event loops
    # with a timer checking progress, as in the app. (A processEvents() polling loop, and a Python
    # signal emitted from a slot fed by the engine thread, both crashed PySide6 6.12 here.)
    class Recorder(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.deltas = 0
            self.done = False
            self.loop: QEventLoop | None = None
            self.until = ""

        @Slot(str)
        def on_delta(self, _text: str) -> None:
            self.deltas += 1

        @Slot(object)
        def on_finished(self, _stats: object) -> None:
            self.done = True

        @Slot(str)
        def on_failed(self, _message: str) -> None:
            self.done = True

        @Slot()
        def check(self) -> None:
            reached = self.done if self.until == "done" else self.deltas >= 5
            if reached and self.loop is not None:
                self.loop.quit()

        def wait(self, until: str, timeout_ms: int = 0) -> None:
            self.until, self.loop = until, QEventLoop()
            timer = QTimer()
            timer.setInterval(1)
            timer.timeout.connect(self.check)
            timer.start()
            if timeout_ms:
                QTimer.singleShot(timeout_ms, self.loop.quit)
            self.loop.exec()
            timer.stop()
            self.loop = None

    recorder = Recorder()
    engine.reply_delta.connect(recorder.on_delta)
    engine.reply_finished.connect(recorder.on_finished)
    engine.reply_failed.connect(recorder.on_failed)

    def measure(messages: list[dict[str, str]], stop_when: str) -> float:
        recorder.deltas, recorder.done = 0, False
        sampling = Sampling(temperature=0, max_tokens=2000, repeat_penalty=1.0)
        engine.generate(messages, sampling)  # type: ignore[arg-type]
        if stop_when == "generating":
            recorder.wait("deltas")
        else:
            recorder.wait("never", timeout_ms=250)  # mid-way through a ~4k-token prompt
            assert not recorder.deltas, "the prompt was evaluated before Stop; use a longer one"
        pressed = time.perf_counter()
        engine.stop()
        if not recorder.done:
            recorder.wait("done")
        return time.perf_counter() - pressed

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

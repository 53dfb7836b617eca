"""Seconds from pressing Stop to the engine being idle: while generating, and while a ~4k-token
prompt is being evaluated. Measured through the GUI's engine controller and event loop."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import (
    bench_engine,
    deadline,
    end_engine_processes,
    fail,
    figure,
    machine,
    median,
    model_path,
    parser,
)

LOAD_SECONDS = 120  # to load the model (a fallback to safe CPU mode loads it again)
FIRST_WORDS_SECONDS = 60  # from sending to the fifth delta (the first reply may fall back too)
STOPPED_SECONDS = 10  # from Stop to the end of the reply (the target is 0.3)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    from PySide6.QtCore import QEventLoop, QObject, QTimer, Slot
    from PySide6.QtWidgets import QApplication

    from app.engine.types import LoadParams
    from app.settings import Sampling
    from ui.engine_controller import EngineController

    _app = QApplication.instance() or QApplication([])
    model = model_path(args.model)
    print(f"model {model.name}, {args.threads} threads; {machine()}", flush=True)
    # The app's engine, except that under fault injection safe CPU mode is remembered only here.
    engine = EngineController(bench_engine)

    # Cross-thread signals go to bound methods of a QObject, and waiting happens in event loops
    # with a timer checking progress, as in the app. (A processEvents() polling loop, and a Python
    # signal emitted from a slot fed by the engine thread, both crashed PySide6 6.12 here.)
    class Recorder(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.loaded: object = None
            self.deltas = 0
            self.done = False
            self.failure = ""  # why the engine could not go on
            self.notices: list[str] = []
            self.timed_out = False
            self.loop: QEventLoop | None = None
            self.until = ""

        @Slot(object)
        def on_loaded(self, info: object) -> None:
            self.loaded = info

        @Slot(str, str)
        def on_load_failed(self, _path: str, message: str) -> None:
            self.failure = f"the model did not load: {message}"

        @Slot(str)
        def on_delta(self, _text: str) -> None:
            self.deltas += 1

        @Slot(object)
        def on_finished(self, stats: object) -> None:
            self.done = True
            if getattr(stats, "notice", ""):
                self.notices.append(stats.notice)  # type: ignore[attr-defined]

        @Slot(str)
        def on_failed(self, message: str) -> None:
            self.done = True
            self.failure = f"the reply failed: {message}"

        def reached(self) -> bool:
            if self.until == "loaded":
                return self.loaded is not None
            if self.until == "done":
                return self.done
            return self.until == "deltas" and self.deltas >= 5

        @Slot()
        def check(self) -> None:
            if (self.reached() or self.failure) and self.loop is not None:
                self.loop.quit()

        @Slot()
        def expire(self) -> None:
            self.timed_out = True
            if self.loop is not None:
                self.loop.quit()

        def wait(self, until: str, timeout_s: float) -> bool:
            """Run the event loop until ``until`` is reached or ``timeout_s`` pass; whether it
            was. A failure of the engine ends the benchmark."""
            self.until, self.timed_out, self.loop = until, False, QEventLoop()
            timer = QTimer()
            timer.setInterval(1)
            timer.timeout.connect(self.check)
            timer.start()
            deadline = QTimer()
            deadline.setSingleShot(True)
            deadline.timeout.connect(self.expire)
            deadline.start(int(timeout_s * 1000))
            if not (self.reached() or self.failure):
                self.loop.exec()
            timer.stop()
            deadline.stop()
            self.loop = None
            if self.failure:
                stop(self.failure)
            return self.reached()

    def stop(reason: str) -> None:
        """Shut the engine down and end the benchmark with the reason."""
        engine.stop()
        if not recorder.failure:  # the engine may be stuck: end its process, the thread follows
            end_engine_processes()
        with deadline(15, f"{reason}; and the engine did not shut down"):
            engine.shutdown()
        fail(reason)

    recorder = Recorder()
    engine.model_loaded.connect(recorder.on_loaded)
    engine.model_load_failed.connect(recorder.on_load_failed)
    engine.reply_delta.connect(recorder.on_delta)
    engine.reply_finished.connect(recorder.on_finished)
    engine.reply_failed.connect(recorder.on_failed)
    engine.load(str(model), LoadParams(context_length=8192, threads=args.threads))
    if not recorder.wait("loaded", LOAD_SECONDS):
        stop(f"the model did not load in {LOAD_SECONDS} s")

    def measure(messages: list[dict[str, str]], stop_when: str) -> float:
        recorder.deltas, recorder.done = 0, False
        sampling = Sampling(temperature=0, max_tokens=2000, repeat_penalty=1.0)
        engine.generate(messages, sampling)  # type: ignore[arg-type]
        if stop_when == "generating":
            if not recorder.wait("deltas", FIRST_WORDS_SECONDS):
                what = "the reply ended" if recorder.done else "nothing came"
                stop(f"five pieces of a reply did not come in {FIRST_WORDS_SECONDS} s: {what}")
        else:
            recorder.wait("never", 0.25)  # mid-way through a ~4k-token prompt
            if recorder.deltas or recorder.done:
                stop("the prompt was evaluated before Stop; use a longer one")
        pressed = time.perf_counter()
        engine.stop()
        if not recorder.wait("done", STOPPED_SECONDS):
            stop(f"the reply did not end in {STOPPED_SECONDS} s after Stop")
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
    if getattr(recorder.loaded, "safe_cpu", False):
        print("the model was loaded in safe CPU mode (Hearth remembers this machine needs it)")
    for notice in recorder.notices:
        print(f"engine notice: {notice}")
    print(
        f"stop while generating: median {median(gen) * 1000:.1f} ms, max {max(gen) * 1000:.1f} ms"
    )
    print(
        f"stop during prompt evaluation: median {median(prompt) * 1000:.1f} ms, max {max(prompt) * 1000:.1f} ms"
    )
    figure("stop latency, worst of both medians (s)", max(median(gen), median(prompt)), "<= 0.3")


if __name__ == "__main__":
    main()

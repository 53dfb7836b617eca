"""A synthetic engine streams 20,000 tokens of Markdown as fast as it can into the real chat page.

Measures main-thread stalls with an event-loop lag probe, the render cost of the last 1,000 tokens
divided by the first 1,000's, and the time to first paint of a 2,000-message conversation.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import figure, machine, parser

PARAGRAPH = (
    "The **lighthouse** stood at the edge of the world, and its keeper counted the waves as "
    "other people count sheep. Every night the lamp turned, patient and bright, and every "
    "morning the sea gave back a little of what it had taken. "
)
LIST = "- first, check the *oil* level\n- then trim the wick\n- finally, `polish` the lens\n"
CODE = "```python\ndef beam(angle: float) -> float:\n    return (angle + 1.5) % 360\n```\n"


def corpus_tokens(n: int) -> list[str]:
    blocks = [
        PARAGRAPH + "\n\n",
        "## A heading\n\n",
        LIST + "\n",
        CODE + "\n",
        PARAGRAPH * 2 + "\n\n",
    ]
    pieces: list[str] = []
    i = 0
    while len(pieces) < n:
        block = blocks[i % len(blocks)]
        i += 1
        # ~4 characters a token, like a real tokenizer on English text.
        pieces.extend(block[j : j + 4] for j in range(0, len(block), 4))
    return pieces[:n]


class SyntheticEngine:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self._loaded = None

    @property
    def loaded(self):  # type: ignore[no-untyped-def]
        return self._loaded

    def load(self, path, params, cancel=None):  # type: ignore[no-untyped-def]
        from app.engine.types import LoadedModel

        self._loaded = LoadedModel(path, "synthetic", 8192, "model", "model's own", 0)
        return self._loaded

    def unload(self) -> None:
        self._loaded = None

    def prepare(self, messages) -> None:  # type: ignore[no-untyped-def]
        pass  # nothing to evaluate ahead

    def interrupt(self) -> None:
        pass  # the benchmark never stops a reply

    def close(self) -> None:
        pass

    def chat(self, messages, sampling, cancel, rules=None):  # type: ignore[no-untyped-def]
        from app.engine.types import GenerationStats, Reply

        stats = GenerationStats()

        def gen() -> Iterator[str]:
            for t in self.tokens:
                if cancel.is_set():
                    return
                stats.generated_tokens += 1
                yield t

        return Reply(gen(), stats)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.chats.store import ChatStore
    from app.context import AppContext
    from app.library import LibraryEntry
    from app.model_file import ModelFileInfo
    from ui import chat_view
    from ui.chat_page import ChatPage
    from ui.engine_controller import EngineController

    n_tokens = 5_000 if args.quick else 20_000
    print(f"{n_tokens} tokens of Markdown; {machine()}")
    app = QApplication.instance() or QApplication([])
    tokens = corpus_tokens(n_tokens)
    boundaries = [0]
    for t in tokens:
        boundaries.append(boundaries[-1] + len(t))

    # Time every render, keyed by how much of the reply it showed.
    renders: list[tuple[int, float]] = []
    original = chat_view.MessageWidget.set_content

    def timed(self, content: str, streaming: bool = False) -> None:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        original(self, content, streaming)
        if self.role == "assistant":
            renders.append((len(content), time.perf_counter() - started))

    chat_view.MessageWidget.set_content = timed  # type: ignore[method-assign]

    ctx = AppContext.open()
    store = ChatStore(":memory:")
    engine = EngineController(lambda: SyntheticEngine(tokens))
    page = ChatPage(ctx, store, engine)
    page.resize(1100, 800)
    page.show()
    info = ModelFileInfo(
        "synthetic.gguf", 1, "llama", "synthetic", 1, "F16", 8192, None, None, 1, 1, 1, 1
    )
    page.set_models([LibraryEntry(Path("synthetic.gguf"), "file", info)])

    # Warm up once (first text document, fonts, Pygments lexers), as any earlier reply would have.
    warm = chat_view.MessageWidget("assistant", page.view._renderer)
    warm.set_content("".join(tokens[:400]))
    warm.deleteLater()
    renders.clear()  # the warm-up is not the reply's first 1,000 tokens

    lags: list[float] = []
    last = [time.perf_counter()]
    interval = 0.005

    def probe() -> None:
        now = time.perf_counter()
        lags.append(max(0.0, now - last[0] - interval))
        last[0] = now

    timer = QTimer()
    timer.setInterval(int(interval * 1000))
    timer.timeout.connect(probe)
    done: list[object] = []
    engine.reply_finished.connect(done.append)
    page.input.setPlainText("Tell me about lighthouses.")
    started = time.perf_counter()
    timer.start()
    page.send()
    while not done or page._stream is not None:  # until the view has shown all of it
        app.processEvents()
    elapsed = time.perf_counter() - started
    timer.stop()
    lags.sort()
    slow = sorted(((d * 1000, n) for n, d in renders), reverse=True)[:5]
    print("slowest renders: " + ", ".join(f"{ms:.1f} ms at {n:,} chars" for ms, n in slow))
    p50 = lags[len(lags) // 2]
    p99 = lags[int(len(lags) * 0.99)]
    print(
        f"streamed {n_tokens} tokens in {elapsed:.2f} s ({n_tokens / elapsed:.0f} tokens/s), {len(renders)} renders"
    )
    print(
        f"event-loop lag: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms"
    )

    # Each render's cost is spread over the characters it added; a token range costs its share.
    def cost(lo: int, hi: int) -> float:
        total, shown = 0.0, 0
        for n, d in renders:
            added = n - shown
            if added > 0:
                overlap = max(0, min(n, hi) - max(shown, lo))
                total += d * overlap / added
            shown = max(shown, n)
        return total

    first_cost = cost(0, boundaries[1000])
    last_cost = cost(boundaries[n_tokens - 1000], boundaries[n_tokens])
    print(
        f"render cost: first 1,000 tokens {first_cost * 1000:.1f} ms, "
        f"last 1,000 tokens {last_cost * 1000:.1f} ms"
    )
    growth = last_cost / first_cost

    conversation = store.create_conversation("long")
    for i in range(2000):
        store.add_message(
            conversation.id,
            "user" if i % 2 == 0 else "assistant",
            PARAGRAPH + LIST if i % 2 else "Question?",
        )
    started = time.perf_counter()
    page.open_conversation(conversation.id)
    page.repaint()
    app.processEvents()
    paint = time.perf_counter() - started
    print(f"2,000-message conversation: first paint after {paint * 1000:.0f} ms")
    engine.shutdown()
    figure("event-loop lag p99 (ms)", p99 * 1000, "< 16")
    figure("render cost, last 1,000 tokens / first 1,000", growth, "<= 1.5")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()

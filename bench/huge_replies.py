"""Huge and hostile replies in the real chat view: the longest the window stalls showing each one
(a finished reply opened) and streaming it (400 characters per event-loop pass, as the chat page
reveals a fast engine's burst), and what it costs in memory.

The set: code fences of 1 MB, 300 KB and 60 KB; a 50,000-row table; a 1 MB line without spaces
(in a reply and in a model card); deep nesting; raw HTML, scripts, remote images and
``javascript:`` links pointing at a local HTTP server that counts requests (must stay 0).
A case that runs past its time limit is stopped and its worst stall so far reported as ">=".
"""

from __future__ import annotations

import gc
import http.server
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import deadline, fail, figure, machine, parser

REVEAL_CHARS = 400  # what the chat page shows per event-loop pass (ui/chat_page.py)


def fence(size: int) -> str:
    lines = []
    total = 0
    i = 0
    while total < size:
        line = f"    result_{i} = transform(values[{i}], scale=1.5, offset={i % 97})  # step {i}\n"
        lines.append(line)
        total += len(line)
        i += 1
    return "Here is the code:\n\n```python\ndef run(values):\n" + "".join(lines) + "```\n\nDone."


def table(rows: int) -> str:
    body = "".join(f"| {i} | Yellow{i % 7} | {i * 0.37:.2f} | note {i} |\n" for i in range(rows))
    return "The data:\n\n| # | colour | price | note |\n|---|:---:|---:|---|\n" + body + "\nEnd."


def nesting() -> str:
    parts = [
        "> " * 500 + "deep quote",
        "".join("  " * d + "- level\n" for d in range(300)),
        "[" * 2000 + "x" + "]" * 2000,
        "*" * 3000 + "a" + "*" * 3000,
        "`" * 2000 + "code" + "`" * 2000,
        "<div>" * 2000 + "html" + "</div>" * 2000,
    ]
    return "\n\n".join(parts)


def hostile(port: int) -> str:
    url = f"http://127.0.0.1:{port}"
    one = (
        f"<script>fetch('{url}/script')</script> <img src=\"{url}/img.png\"> "
        f"![remote]({url}/md.png) [click](javascript:alert(1)) <javascript:alert(2)> "
        f'[file](file:///etc/passwd) <iframe src="{url}/frame"></iframe> '
        f'<link rel="stylesheet" href="{url}/style.css"> <style>@import "{url}/imp.css";</style> '
        f'\x1b[31mred\x1b[0m \x07 <a href="{url}/a" onclick="x()">a</a>\n\n'
    )
    return one * 400


class CountingServer:
    """A local HTTP server that counts every request it gets."""

    def __init__(self) -> None:
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass  # quiet

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def rss_mb() -> float:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    from PySide6.QtWidgets import QAbstractButton, QApplication

    try:
        from app.chats.records import Message
    except ImportError:  # older trees, for a figure before a change
        from app.chats.store import Message  # type: ignore[attr-defined,no-redef]
    from ui.chat_view import ChatView
    from ui.item_models import MessageListModel
    from ui.model_panel import ModelPanel

    app = QApplication.instance() or QApplication([])
    limit = 20.0 if args.quick else 90.0  # seconds per case and mode
    server = CountingServer()
    cases: list[tuple[str, str]] = [
        ("1 MB code fence", fence(1_000_000)),
        ("300 KB code fence", fence(300_000)),
        ("60 KB code fence", fence(60_000)),
        ("50,000-row table", table(50_000)),
        ("1 MB line without spaces", "A line: " + "x" * 1_000_000),
        ("deep nesting", nesting()),
        ("HTML, scripts, images, javascript: links", hostile(server.port)),
    ]
    if args.quick:  # the same kinds, smaller
        cases[0] = ("300 KB code fence", fence(300_000))
        cases[1] = ("100 KB code fence", fence(100_000))
        cases[3] = ("10,000-row table", table(10_000))
        cases[4] = ("200 KB line without spaces", "A line: " + "x" * 200_000)
    card_line = 100_000 if args.quick else 1_000_000
    print(f"{len(cases)} huge replies, {limit:.0f} s at most each; {machine()}")

    def new_view() -> tuple[MessageListModel, ChatView]:
        model = MessageListModel()
        view = ChatView(model)
        view.resize(1000, 800)
        view.show()
        app.processEvents()
        return model, view

    def message(i: int, role: str, content: str, status: str = "complete") -> Message:
        return Message(i, 1, None, role, content, status=status)  # type: ignore[arg-type]

    cpu_worst = [0.0]  # the main thread's own time in its longest pass

    def timed(step: Callable[[], object]) -> float:
        """How long ``step`` held the event loop (wall clock); its CPU time is kept too, since
        other processes on a shared machine can stretch the wall clock."""
        wall, cpu = time.perf_counter(), time.thread_time()
        step()
        cpu_worst[0] = max(cpu_worst[0], time.thread_time() - cpu)
        return time.perf_counter() - wall

    def settle(view: ChatView, started: float, passes: list[float]) -> bool:
        """Run event-loop passes until the view has rendered everything; False on time out."""
        for w in view.message_widgets():
            content = getattr(w, "content", None)
            while content is not None and content.rendering():
                if time.perf_counter() - started > limit:
                    return False
                passes.append(timed(app.processEvents))
        passes.append(timed(app.processEvents))
        return True

    def show(text: str) -> tuple[float, bool, float, float]:
        """The worst stall showing ``text``, whether it finished in time, the memory it took,
        and the worst stall of clicking each "Show all" it has."""
        model, view = new_view()
        before = rss_mb()
        started = time.perf_counter()

        def open_conversation() -> None:
            model.set_messages([message(1, "user", "Show me."), message(2, "assistant", text)])
            view.repaint()

        passes = [timed(open_conversation)]
        complete = settle(view, started, passes)
        grown = rss_mb() - before
        show_all = 0.0
        content = getattr(view.message_widgets()[1], "content", None)
        for piece in content.pieces() if content is not None else []:
            more = getattr(piece, "more", None)
            if more is not None and more.isVisibleTo(view):

                def click(more: QAbstractButton = more) -> None:
                    more.click()
                    view.repaint()
                    app.processEvents()

                show_all = max(show_all, timed(click))
        view.deleteLater()
        app.processEvents()
        return max(passes), complete, grown, show_all

    def stream(text: str) -> tuple[float, bool, int]:
        model, view = new_view()
        model.set_messages(
            [message(1, "user", "Show me."), message(2, "assistant", "", "streaming")]
        )
        app.processEvents()
        worst = 0.0
        started = time.perf_counter()
        updates = 0
        for i in range(0, len(text), REVEAL_CHARS):

            def update(piece: str = text[i : i + REVEAL_CHARS]) -> None:
                model.append_text(1, piece)
                app.processEvents()

            worst = max(worst, timed(update))
            updates += 1
            if time.perf_counter() - started > limit:
                view.deleteLater()
                return worst, False, updates

        def finish() -> None:
            model.update(1, status="complete")
            app.processEvents()

        worst = max(worst, timed(finish))
        passes: list[float] = []
        complete = settle(view, started, passes)
        view.deleteLater()
        app.processEvents()
        return max([worst, *passes]), complete, updates

    def card(text: str) -> tuple[float, bool]:
        panel = ModelPanel(4096)
        panel.resize(1000, 800)
        panel.show()
        panel.stack.setCurrentIndex(1)
        app.processEvents()

        def show_card() -> None:
            panel.show_card(text)
            panel.repaint()
            app.processEvents()

        took = timed(show_card)
        panel.deleteLater()
        return took, True

    def ms(seconds: float, complete: bool) -> str:
        return f"{'' if complete else '>= '}{seconds * 1000:,.0f} ms"

    worst = 0.0
    # A first reply warms up what any earlier reply would have (fonts, Pygments' lexers).
    show("Warm-up: **bold** and code\n\n```python\nx = 1\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    cpu_worst[0] = 0.0  # the warm-up is not part of the set
    with deadline(limit * 2 * len(cases) + 120, "huge replies"):
        for name, text in cases:
            stall, complete, grown, show_all = show(text)
            line = (
                f"{name} ({len(text) / 1000:,.0f} KB): show {ms(stall, complete)}, +{grown:,.0f} MB"
            )
            if show_all:
                line += f", Show all {ms(show_all, True)}"
            worst = max(worst, stall, show_all)
            stall, complete, updates = stream(text)
            worst = max(worst, stall)
            print(f"{line}; stream {ms(stall, complete)} worst of {updates:,} updates", flush=True)
        for name, text in [
            (
                f"model card, {card_line // 1000:,} KB line without spaces",
                "# Card\n\n" + "y" * card_line,
            )
        ]:
            took, complete = card(text)
            worst = max(worst, took)
            print(f"{name}: show {ms(took, complete)}", flush=True)
    time.sleep(0.2)  # any request made while rendering has arrived by now
    print(f"requests to the local server: {server.hits}")
    print(f"the main thread's own time in its longest pass: {cpu_worst[0] * 1000:,.0f} ms")
    if server.hits:
        fail(f"showing replies made {server.hits} requests to a server they named")
    figure("worst GUI stall on the huge-reply set (ms)", worst * 1000, "< 100")


if __name__ == "__main__":
    main()

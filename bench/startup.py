"""Time until the main window is shown vs a bare PySide6 window; idle RSS; RSS after loading and
unloading the starter model (memory must come back)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import figure, machine, median, model_path, parser, rss_mb

ROOT = Path(__file__).resolve().parents[1]
BARE = """
import time; t0 = time.perf_counter()
from PySide6.QtWidgets import QApplication, QMainWindow
from PySide6.QtCore import QTimer
app = QApplication([]); w = QMainWindow(); w.setWindowTitle("bare"); w.show()
QTimer.singleShot(0, lambda: (print(time.perf_counter() - t0), app.quit()))
app.exec()
"""
HEARTH = """
import time; t0 = time.perf_counter()
from PySide6.QtWidgets import QApplication
from PySide6.QtCore import QTimer
app = QApplication([])
from app.chats.store import ChatStore
from app.context import AppContext
from ui.application import create_engine
from ui.engine_controller import EngineController
from ui.main_window import MainWindow
from ui.theme import apply_theme
ctx = AppContext.open(); apply_theme(app, ctx.settings.theme)
store = ChatStore(ctx.paths.chats_db); engine = EngineController(create_engine)
w = MainWindow(ctx, store, engine); w.show()
def shown():
    elapsed = time.perf_counter() - t0
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"): rss = int(line.split()[1]) / 1024
    print(elapsed, rss); engine.shutdown(); app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""


def run(code: str, env: dict[str, str]) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True
    )
    return [float(x) for x in out.stdout.split()]


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    print(machine())
    runs = 3 if args.quick else 7
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "HEARTH_HOME": home,
            "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
        }
        # As on a person's machine, Python keeps the compiled modules (a development shell may
        # say otherwise); a first start, not timed, compiles them, as the app's first start does.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        run(BARE, env)
        run(HEARTH, env)
        bare, hearth, rss = [], [], []
        for _ in range(runs):
            bare.append(run(BARE, env)[0])
            t, r = run(HEARTH, env)
            hearth.append(t)
            rss.append(r)
    print(
        f"window shown: hearth {median(hearth):.3f} s, bare PySide6 {median(bare):.3f} s "
        f"(hearth / bare {median(hearth) / median(bare):.2f})"
    )
    print(f"idle RSS after the window is shown: {median(rss):.0f} MB")

    from app.engine.llama_cpp_engine import LlamaCppEngine, llama
    from app.engine.types import LoadParams

    llama()  # the native library's own footprint is not the model's
    engine = LlamaCppEngine()
    model = model_path(args.model)
    before = rss_mb()
    engine.load(str(model), LoadParams(context_length=4096, threads=args.threads))
    # mmap'd weights count in RSS once touched: evaluate a prompt so they are.
    import threading

    from app.settings import Sampling

    list(
        engine.chat([{"role": "user", "content": "Hi"}], Sampling(max_tokens=4), threading.Event())
    )
    loaded = rss_mb()
    engine.unload()
    after = rss_mb()
    took = loaded - before
    returned = (loaded - after) / took if took > 0 else float("nan")
    print(
        f"RSS with {model.name}: before {before:.0f} MB, loaded {loaded:.0f} MB, unloaded {after:.0f} MB "
        f"(returned {returned:.0%} of the {took:.0f} MB load took)"
    )
    figure("window shown (s)", median(hearth), "< 0.8")
    figure("idle RSS (MB)", median(rss), "< 200")
    figure("memory returned on unload", returned, ">= 0.90")


if __name__ == "__main__":
    main()

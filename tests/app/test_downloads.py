"""Hub search and downloads against a local fake Hub (the real one is never contacted)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest

from app.cli import main
from app.context import AppContext
from app.downloads import ChecksumMismatch, Downloader, DownloadError
from app.engine.llama_cpp_engine import LlamaCppEngine
from app.engine.types import LoadParams
from app.hub import (
    GatedError,
    HubError,
    OfflineError,
    choose,
    list_models,
    quant_label,
    search_page,
)
from app.settings import Sampling
from tests.fake_hub import FakeHub

REPO = "acme/Tiny-GGUF"


@pytest.fixture
def hub(fake_hub: FakeHub, tiny_model: Path) -> FakeHub:
    data = tiny_model.read_bytes()
    fake_hub.add(
        REPO, {"tiny-Q4_K_M.gguf": data, "tiny-Q8_0.gguf": data + b"", "README.md": b"# Tiny"}
    )
    return fake_hub


def fast() -> Downloader:
    return Downloader(stall_seconds=0.5, backoff=0.01)


def pull(hub: FakeHub, selector: str = "", downloader: Downloader | None = None) -> list[Path]:
    ctx = AppContext.open()
    model = choose(list_models(REPO), selector)
    return (downloader or fast()).pull(model, ctx.paths.models_dir, ctx.paths.partial_dir)


def test_quant_labels() -> None:
    assert quant_label("Qwen2.5-7B-Instruct-Q4_K_M.gguf") == "Q4_K_M"
    assert quant_label("model.IQ3_XXS.gguf") == "IQ3_XXS"
    assert quant_label("x-f16-00001-of-00002.gguf") == "F16"
    assert quant_label("weights.gguf") == "other"


def test_search_and_list(hub: FakeHub) -> None:
    hub.add("other/Llama-GGUF", {"llama-Q4_0.gguf": b"x" * 10})
    assert [r.repo_id for r in search_page("tiny").results] == [REPO]
    models = list_models(REPO)
    assert {m.quant for m in models} == {"Q4_K_M", "Q8_0"}  # README.md is not a model
    assert choose(models, "").quant == "Q4_K_M"
    assert choose(models, "q8_0").quant == "Q8_0"
    assert choose(models, "tiny-Q8_0.gguf").quant == "Q8_0"
    with pytest.raises(HubError, match="Available: Q4_K_M, Q8_0"):
        choose(models, "Q2_K")


def test_split_files_are_one_model(hub: FakeHub) -> None:
    hub.add(
        "acme/big",
        {"big-Q4_0-00001-of-00002.gguf": b"a" * 100, "big-Q4_0-00002-of-00002.gguf": b"b" * 50},
    )
    [model] = list_models("acme/big")
    assert (model.name, model.size, len(model.files)) == ("big-Q4_0", 150, 2)


def test_search_download_and_chat(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["repo_id"] == REPO
    assert main(["pull", REPO]) == 0
    assert not [p for _m, p, _r in hub.requests if "agent-harnesses" in p]  # no telemetry
    ctx = AppContext.open()
    dest = ctx.paths.models_dir / "acme" / "Tiny-GGUF" / "tiny-Q4_K_M.gguf"
    assert dest.exists()
    assert not list(ctx.paths.partial_dir.rglob("*.part"))
    [model] = [m for m in ctx.library.scan() if m.path == dest]
    assert model.usable
    engine = LlamaCppEngine()
    engine.load(str(dest), LoadParams(context_length=512, threads=2))
    reply = engine.chat(
        [{"role": "user", "content": "hi"}], Sampling(max_tokens=4), threading.Event()
    )
    assert list(reply)
    engine.unload()
    assert main(["models", "rm", "tiny-Q4_K_M"]) == 0
    assert not dest.exists()


def test_resume_after_kill(hub: FakeHub, tiny_model: Path) -> None:
    size = tiny_model.stat().st_size
    hub.throttle = size / 4  # ~4 s for the whole file
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "pull", REPO],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ctx = AppContext.open()
    part = ctx.paths.partial_dir / "acme" / "Tiny-GGUF" / "tiny-Q4_K_M.gguf.part"
    deadline = time.monotonic() + 20
    while (not part.exists() or part.stat().st_size < size // 4) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = part.stat().st_size
    assert 0 < kept < size
    hub.throttle = 0
    hub.requests.clear()
    [dest] = pull(hub)
    assert dest.read_bytes() == tiny_model.read_bytes()
    ranges = [r for m, p, r in hub.requests if p.startswith("/cdn/")]
    assert ranges == [f"bytes={kept}-"]  # only the missing bytes were fetched again


def test_dropped_connection_resumes(hub: FakeHub, tiny_model: Path) -> None:
    hub.faults["tiny-Q4_K_M.gguf"] = ["drop:100000"]
    [dest] = pull(hub)
    assert dest.read_bytes() == tiny_model.read_bytes()
    assert [r for m, p, r in hub.requests if p.startswith("/cdn/")] == ["bytes=0-", "bytes=100000-"]


def test_stall_is_detected(hub: FakeHub, tiny_model: Path) -> None:
    hub.faults["tiny-Q4_K_M.gguf"] = ["stall:50000"]
    started = time.monotonic()
    [dest] = pull(hub)
    assert dest.read_bytes() == tiny_model.read_bytes()
    assert time.monotonic() - started < 4  # the 5 s stall was cut at 0.5 s


def test_429_honours_retry_after_and_500_is_retried(hub: FakeHub) -> None:
    hub.faults["tiny-Q4_K_M.gguf"] = ["429:3", "500"]
    waits: list[float] = []
    pull(hub, downloader=Downloader(stall_seconds=2, backoff=0.01, sleep=waits.append))
    assert waits[0] == 3.0
    assert len(waits) == 2


def test_corrupted_byte_fails_verification(hub: FakeHub) -> None:
    hub.faults["tiny-Q4_K_M.gguf"] = ["corrupt"]
    with pytest.raises(ChecksumMismatch, match="checksum"):
        pull(hub)
    ctx = AppContext.open()
    assert not (ctx.paths.models_dir / "acme" / "Tiny-GGUF" / "tiny-Q4_K_M.gguf").exists()


def test_gated_without_and_with_token(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.repos[REPO].gated = True
    with pytest.raises(GatedError, match="gated"):
        pull(hub)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    hub.authorized_paths.clear()
    [dest] = Downloader(token=hub.token, stall_seconds=1).pull(
        choose(list_models(REPO), ""),
        AppContext.open().paths.models_dir,
        AppContext.open().paths.partial_dir,
    )
    assert dest.exists()
    # The token went to the Hub, not to the other host the file was redirected to.
    assert any("/resolve/" in p for p in hub.authorized_paths)
    assert not any(p.startswith("/cdn/") for p in hub.authorized_paths)
    assert any(p.startswith("/cdn/") for _m, p, _r in hub.requests)


def test_not_found(hub: FakeHub) -> None:
    with pytest.raises(HubError, match="not found"):
        list_models("acme/nope")


def test_not_enough_disk_space(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        "app.downloads.transfer.shutil.disk_usage", lambda _p: usage(10**9, 10**9, 1000)
    )
    hub.requests.clear()
    with pytest.raises(DownloadError, match="Not enough disk space"):
        pull(hub)
    assert not [p for _m, p, _r in hub.requests if p.startswith("/cdn/")]


@pytest.mark.parametrize(
    "name",
    [
        "../evil.gguf",
        "/etc/evil.gguf",
        "a/../../evil.gguf",
        "C:/evil.gguf",
        "evil\x00.gguf",
        "a\\..\\evil.gguf",
        "x" * 300 + ".gguf",
        "CON.gguf",
        "sub/nul.Q4_K_M.gguf",
        "sub./evil.gguf",
        "tab\tname.gguf",
    ],
)
def test_unsafe_file_names_are_refused(hub: FakeHub, name: str) -> None:
    hub.add("acme/evil", {name: b"GGUF"})
    with pytest.raises(HubError, match="unsafe file name"):
        list_models("acme/evil")


def test_offline_makes_no_request(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.requests.clear()
    with pytest.raises(OfflineError):
        search_page("tiny")
    assert main(["pull", REPO]) == 1
    assert "offline" in capsys.readouterr().err
    assert hub.requests == []


def test_two_pulls_of_one_file_take_turns(hub: FakeHub, tiny_model: Path) -> None:
    """One downloader per file: the second waits for the first (and says so), then finds the
    file done; nothing is appended twice, no traceback."""
    size = tiny_model.stat().st_size
    hub.throttle = size / 30  # slow until the second pull is waiting, however busy the machine
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "app", "pull", REPO]
    first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    ctx = AppContext.open()
    part = ctx.paths.partial_dir / "acme" / "Tiny-GGUF" / "tiny-Q4_K_M.gguf.part"
    deadline = time.monotonic() + 20
    while not part.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    assert second.stderr is not None
    said = ""
    while "waiting" not in said:
        line = second.stderr.readline()
        if not line:
            break
        said += line
    hub.throttle = 0  # the first may finish now
    _, first_err = first.communicate(timeout=60)
    rest = second.communicate(timeout=60)[1]
    assert first.returncode == 0, first_err
    assert second.returncode == 0, said + rest
    assert "Traceback" not in first_err + said + rest
    assert "waiting for it to finish" in said
    dest = ctx.paths.models_dir / "acme" / "Tiny-GGUF" / "tiny-Q4_K_M.gguf"
    assert dest.read_bytes() == tiny_model.read_bytes()
    assert len([r for m, p, r in hub.requests if p.startswith("/cdn/")]) == 1  # fetched once

"""The download queue: concurrency, pause/resume/cancel, restart and kill, failures (fake Hub)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.context import AppContext
from app.downloads import Downloader, DownloadManager, JobView, State
from app.hub import RemoteModel, list_models, set_offline
from tests.fake_hub import FakeHub

SIZE = 2_000_000


def blob(seed: int, size: int = SIZE) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (size // 32)


@pytest.fixture
def hub(fake_hub: FakeHub) -> FakeHub:
    for i in range(3):
        fake_hub.add(f"acme/m{i}-GGUF", {f"m{i}-Q4_K_M.gguf": blob(i)})
    return fake_hub


def model(i: int) -> RemoteModel:
    return list_models(f"acme/m{i}-GGUF")[0]


def manager(concurrency: int = 2, token: str | None = None) -> DownloadManager:
    p = AppContext.open().paths
    return DownloadManager(
        p.models_dir,
        p.partial_dir,
        p.downloads_file,
        token=lambda: token,
        concurrency=concurrency,
        downloader=lambda t: Downloader(token=t, stall_seconds=1, backoff=0.01),
    )


def wait_for(cond: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def state(m: DownloadManager, i: int) -> JobView:
    [job] = [j for j in m.jobs() if j.repo_id == f"acme/m{i}-GGUF"]
    return job


def cdn_ranges(hub: FakeHub) -> list[str]:
    return [r for _m, p, r in hub.requests if p.startswith("/cdn/")]


def test_download_lands_in_owner_repo_folder_and_persists(hub: FakeHub) -> None:
    m = manager()
    m.add(model(0))
    wait_for(lambda: state(m, 0).state is State.DONE)
    job = state(m, 0)
    dest = AppContext.open().paths.models_dir / "acme" / "m0-GGUF" / "m0-Q4_K_M.gguf"
    assert job.paths == (str(dest),)
    assert dest.read_bytes() == blob(0)
    assert job.done == job.total == SIZE
    again = manager()
    again.restore()
    assert state(again, 0).state is State.DONE  # the list survives a restart
    assert again.add(model(0)).state is State.DONE  # no second download of a finished model


def test_concurrency_limits_running_downloads(hub: FakeHub) -> None:
    hub.throttle = SIZE  # 1 s a file
    m = manager(concurrency=1)
    for i in range(3):
        m.add(model(i))
    running = []
    while m.busy:
        running.append(sum(j.state is State.ACTIVE for j in m.jobs()))
        if len(running) == 5:
            m.set_concurrency(3)
        time.sleep(0.02)
    assert max(running[:5]) == 1
    assert max(running) >= 2  # a raised limit starts waiting downloads at once
    assert all(j.state is State.DONE for j in m.jobs())


def test_pause_resume_and_cancel(hub: FakeHub) -> None:
    hub.throttle = SIZE / 2
    m = manager()
    m.add(model(0))
    m.add(model(1))
    wait_for(lambda: state(m, 0).done > SIZE // 3 and state(m, 1).done > 0)
    speed = state(m, 0).speed
    eta = state(m, 0).eta
    assert speed > 0
    assert eta is not None
    assert eta > 0
    m.pause(state(m, 0).id)
    wait_for(lambda: state(m, 0).state is State.PAUSED)
    kept = state(m, 0).done
    part = AppContext.open().paths.partial_dir / "acme" / "m0-GGUF" / "m0-Q4_K_M.gguf.part"
    assert part.stat().st_size == kept > 0

    m.cancel(state(m, 1).id)
    wait_for(lambda: not [j for j in m.jobs() if j.repo_id == "acme/m1-GGUF"])
    assert not list((part.parent.parent / "m1-GGUF").glob("*"))  # its bytes are gone

    hub.throttle = 0
    hub.requests.clear()
    m.resume(state(m, 0).id)
    wait_for(lambda: state(m, 0).state is State.DONE)
    assert cdn_ranges(hub) == [f"bytes={kept}-"]
    assert Path(state(m, 0).paths[0]).read_bytes() == blob(0)


def test_restart_resumes_queued_and_running_but_not_paused(hub: FakeHub) -> None:
    hub.throttle = SIZE / 2
    m = manager(concurrency=1)
    m.add(model(0))
    m.add(model(1))
    m.add(model(2))
    m.pause(state(m, 2).id)
    wait_for(lambda: state(m, 0).done > SIZE // 4)
    m.shutdown()
    saved = json.loads(AppContext.open().paths.downloads_file.read_text())
    assert [j["state"] for j in saved["jobs"]] == ["queued", "queued", "paused"]
    kept = state(m, 0).done

    hub.throttle = 0
    hub.requests.clear()
    again = manager(concurrency=1)
    again.restore()
    wait_for(lambda: not again.busy)
    assert [state(again, i).state for i in range(3)] == [State.DONE, State.DONE, State.PAUSED]
    assert f"bytes={kept}-" in cdn_ranges(hub) or kept == 0


def test_killed_app_resumes_from_bytes_on_disk(hub: FakeHub) -> None:
    hub.throttle = SIZE / 4
    script = textwrap.dedent(
        """
        import time
        from app.context import AppContext
        from app.downloads import DownloadManager
        from app.hub import list_models
        p = AppContext.open().paths
        m = DownloadManager(p.models_dir, p.partial_dir, p.downloads_file)
        m.add(list_models("acme/m0-GGUF")[0])
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    part = AppContext.open().paths.partial_dir / "acme" / "m0-GGUF" / "m0-Q4_K_M.gguf.part"
    try:
        wait_for(lambda: part.exists() and part.stat().st_size > SIZE // 4)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = part.stat().st_size
    assert 0 < kept < SIZE

    hub.throttle = 0
    hub.requests.clear()
    m = manager()
    m.restore()
    wait_for(lambda: state(m, 0).state is State.DONE)
    assert cdn_ranges(hub) == [f"bytes={kept}-"]  # SIZE - kept bytes fetched again, no more
    assert Path(state(m, 0).paths[0]).read_bytes() == blob(0)


def test_failures_are_reported_and_can_be_retried(hub: FakeHub) -> None:
    hub.repos["acme/m0-GGUF"].gated = True
    m = manager(token=None)
    m.add(model(0))
    wait_for(lambda: state(m, 0).state is State.FAILED)
    assert "gated" in state(m, 0).error
    assert "token" in state(m, 0).error
    m._token = lambda: hub.token
    m.resume(state(m, 0).id)
    wait_for(lambda: state(m, 0).state is State.DONE)


def test_corrupt_download_fails_and_is_not_placed(hub: FakeHub) -> None:
    hub.faults["m0-Q4_K_M.gguf"] = ["corrupt"]
    m = manager()
    m.add(model(0))
    wait_for(lambda: state(m, 0).state is State.FAILED)
    assert "checksum" in state(m, 0).error
    assert not (AppContext.open().paths.models_dir / "acme" / "m0-GGUF").exists()


def test_full_disk_mid_download(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    writes = [0]

    def write_all(out: object, data: bytes) -> None:
        writes[0] += 1
        if writes[0] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        out.write(data)  # type: ignore[attr-defined]

    monkeypatch.setattr("app.downloads.transfer._write_all", write_all)
    m = manager()
    m.add(model(0))
    wait_for(lambda: state(m, 0).state is State.FAILED)
    assert "disk is full" in state(m, 0).error
    kept = state(m, 0).done
    monkeypatch.undo()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    m.resume(state(m, 0).id)
    wait_for(lambda: state(m, 0).state is State.DONE)
    assert kept > 0
    assert Path(state(m, 0).paths[0]).read_bytes() == blob(0)


def test_offline_queue_waits_and_makes_no_request(hub: FakeHub) -> None:
    remote = model(0)
    m = manager()
    set_offline(True)
    hub.requests.clear()
    m.add(remote)
    time.sleep(0.3)
    assert state(m, 0).state is State.QUEUED
    assert hub.requests == []
    set_offline(False)
    m.kick()
    wait_for(lambda: state(m, 0).state is State.DONE)

"""Resumable, verified downloads of model files from the Hub.

A file is fetched into ``partial/<owner>/<repo>/<file>.part`` (outside the models folder, so a
partial download never looks like a model), resumed with HTTP Range requests after a failure or a
kill, checked against the Hub's sha256, and only then moved into ``models/<owner>/<repo>/`` with an
atomic rename. Stalls (no bytes for ``stall_seconds``), dropped connections, 429 (honouring
Retry-After) and 5xx are retried with backoff; other errors are explained in plain words.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from app.hub import (
    OFFLINE_MESSAGE,
    HubError,
    OfflineError,
    RemoteFile,
    RemoteModel,
    endpoint,
    gated_error,
    offline,
    safe_relative_path,
)

log = logging.getLogger(__name__)
CHUNK = 1 << 20
DISK_MARGIN = 256 * 1024 * 1024  # never fill a disk to the last byte

Progress = Callable[[int, int], None]  # bytes done, bytes total (of the whole model)


LOCKS = ".locks"  # in the partial folder: one lock file per file being downloaded
LOCK_POLL = 0.5  # how often a downloader waiting for another's file looks whether to stop


class DownloadError(HubError):
    pass


class ChecksumMismatch(DownloadError):
    pass


class Stopped(DownloadError):
    """The caller's cancel event stopped the download; the bytes so far stay on disk."""


class DiskFullError(DownloadError):
    pass


@dataclass(frozen=True)
class Target:
    repo_id: str
    url: str
    file: RemoteFile
    dest: Path
    part: Path

    @property
    def meta(self) -> Path:
        """The partial file's size and sha256 as expected when it was started."""
        return self.part.with_name(self.part.name + ".json")

    @property
    def complete(self) -> bool:
        return self.dest.exists() and self.dest.stat().st_size == self.file.size


def bytes_on_disk(targets: list[Target]) -> int:
    """What a download would not fetch again: finished files and the partial bytes."""
    total = 0
    for t in targets:
        if t.complete:
            total += t.file.size
        elif t.part.exists():
            total += min(t.part.stat().st_size, t.file.size)
    return total


def plan(model: RemoteModel, models_dir: Path, partial_dir: Path) -> list[Target]:
    from huggingface_hub import hf_hub_url

    owner_repo = PurePosixPath(*safe_relative_path(model.repo_id).parts)
    if len(owner_repo.parts) != 2:
        raise HubError(f"{model.repo_id!r} is not an owner/name repository id.")
    home = models_dir.joinpath(*owner_repo.parts)
    targets = []
    for f in model.files:
        rel = safe_relative_path(f.name)
        dest = home.joinpath(*rel.parts)
        if home.resolve() not in dest.resolve().parents:
            raise HubError(f"The repository lists an unsafe file name: {f.name!r}")
        part = partial_dir.joinpath(*owner_repo.parts, *rel.parts[:-1], rel.name + ".part")
        url = hf_hub_url(model.repo_id, f.name, endpoint=endpoint())
        targets.append(Target(model.repo_id, url, f, dest, part))
    return targets


def _retry_after(value: str | None, default: float) -> float:
    try:
        return min(max(float(value or default), 0.0), 120.0)
    except ValueError:
        return default


class Downloader:
    def __init__(
        self,
        token: str | None = None,
        stall_seconds: float = 30.0,
        max_attempts: int = 8,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        waiting: Callable[[str], None] | None = None,
    ) -> None:
        """``waiting(file name)`` is told when another downloader (another Hearth, a second
        ``hearth pull``) has the file, which this one then waits for."""
        self.waiting = waiting
        self.token = token
        self.stall_seconds = stall_seconds
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.sleep = sleep

    def pull(
        self,
        model: RemoteModel,
        models_dir: Path,
        partial_dir: Path,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Path]:
        """Download every file of ``model``; returns the final paths. Call again to resume."""
        if offline():
            raise OfflineError(OFFLINE_MESSAGE)
        targets = plan(model, models_dir, partial_dir)
        total = model.size
        needed = total - bytes_on_disk(targets)
        partial_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(partial_dir).free
        if needed + DISK_MARGIN > free:
            raise DiskFullError(
                f"Not enough disk space: {model.name} needs {needed / 1e9:.2f} GB more, "
                f"{free / 1e9:.2f} GB is free."
            )
        todo = [t for t in targets if not t.complete]
        done_before = total - sum(t.file.size for t in todo)
        for t in todo:
            base = done_before

            def report(n: int, base: int = base) -> None:
                if progress:
                    progress(base + n, total)

            self._fetch(t, report, cancel or threading.Event(), partial_dir / LOCKS)
            done_before += t.file.size
        return [t.dest for t in targets]

    def _fetch(
        self, t: Target, report: Callable[[int], None], cancel: threading.Event, locks: Path
    ) -> None:
        """One downloader per file, across processes: two appending to one ``.part`` would ruin
        it (seen: 5 of 6 failed). The locks live in a folder of their own and stay there: one
        deleted while another process waits on it would let a third in."""
        from filelock import FileLock, Timeout

        t.part.parent.mkdir(parents=True, exist_ok=True)
        locks.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(str(t.dest).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        lock = FileLock(locks / f"{name}.lock")
        told = False
        while True:
            try:
                lock.acquire(timeout=LOCK_POLL)
                break
            except Timeout:
                if cancel.is_set():
                    raise Stopped("The download was stopped.") from None
                if not told and self.waiting is not None:
                    self.waiting(t.file.name)
                told = True
        try:
            if t.complete:  # the other downloader finished it meanwhile
                report(t.file.size)
                return
            self._fetch_locked(t, report, cancel)
        finally:
            lock.release()

    def _fetch_locked(
        self, t: Target, report: Callable[[int], None], cancel: threading.Event
    ) -> None:
        from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

        expected = {"size": t.file.size, "sha256": t.file.sha256}
        try:
            if json.loads(t.meta.read_text()) != expected:
                t.part.unlink(missing_ok=True)  # the file changed on the Hub: start over
        except (OSError, ValueError):
            t.part.unlink(missing_ok=True)
        t.meta.write_text(json.dumps(expected))

        headers = build_hf_headers(token=self.token or False)
        # Hashed while it downloads; only bytes kept from an earlier run are read back once.
        hasher = _Hasher()
        try:
            self._loop(t, report, cancel, headers, hasher)
        finally:
            hasher.close()

    def _loop(
        self,
        t: Target,
        report: Callable[[int], None],
        cancel: threading.Event,
        headers: dict[str, str],
        hasher: _Hasher,
    ) -> None:
        # The HTTP stack (urllib, ssl, email parsing: ~70 ms to import) loads with the first
        # download, not with the window.
        from http.client import HTTPException

        from app.downloads import net

        attempts = 0
        while True:
            start = t.part.stat().st_size if t.part.exists() else 0
            if start > t.file.size:
                t.part.unlink()
                start = 0
            if start != hasher.count:
                hasher.reset(_hash_file(t.part, start), start)
            if start == t.file.size:
                break
            report(start)
            if cancel.is_set():
                raise Stopped("The download was stopped.")
            wait = self.backoff * 2 ** min(attempts, 6)
            got = 0
            try:
                with net.get(
                    t.url, {**headers, "Range": f"bytes={start}-"}, self.stall_seconds
                ) as r:
                    status = r.status
                    if status in (401, 403):
                        raise gated_error(t.repo_id)
                    if status == 404:
                        raise DownloadError(f"{t.file.name} was not found on the Hub.")
                    if status == 416:
                        t.part.unlink(missing_ok=True)
                        continue
                    if status == 429 or status >= 500:
                        if status == 429:
                            wait = _retry_after(r.headers.get("Retry-After"), wait)
                        raise _Retry(f"HTTP {status}")
                    if status not in (200, 206):
                        raise DownloadError(f"The Hub answered HTTP {status} for {t.file.name}.")
                    mode = "ab" if status == 206 else "wb"  # 200: the server ignored Range
                    written = start if status == 206 else 0
                    if status == 200 and start:
                        hasher.reset(hashlib.sha256(), 0)
                    # Unbuffered: the network's chunks are large, and a full disk then fails the
                    # write that hit it rather than a later flush.
                    try:
                        out = open(t.part, mode, buffering=0)  # noqa: SIM115
                    except OSError as e:
                        raise _write_error(e, t) from None
                    with out:
                        # As the network delivers it (one socket read per piece), so a dropped
                        # connection loses nothing already received.
                        while chunk := r.read1():
                            try:
                                _write_all(out, chunk)
                            except OSError as e:
                                raise _write_error(e, t) from None
                            hasher.update(chunk)
                            got += len(chunk)
                            written += len(chunk)
                            report(written)
                            if cancel.is_set():
                                raise Stopped("The download was stopped.")
            except (_Retry, OSError, HTTPException) as e:  # dropped, reset, stalled
                attempts = 0 if got else attempts + 1
                if attempts >= self.max_attempts:
                    raise DownloadError(
                        f"Downloading {t.file.name} keeps failing ({e}); it will resume from "
                        "where it stopped when you try again."
                    ) from None
                log.info("download of %s interrupted (%s); retrying in %.1fs", t.file.name, e, wait)
                self.sleep(wait)
        self._verify_and_place(t, hasher.hexdigest())

    def _verify_and_place(self, t: Target, digest: str) -> None:
        if t.file.sha256 and digest != t.file.sha256.lower():
            bad = t.part.with_name(t.part.name + ".corrupt")
            os.replace(t.part, bad)
            raise ChecksumMismatch(
                f"{t.file.name} does not match the Hub's checksum, so it was not added "
                f"(kept as {bad.name} for inspection). Download it again."
            )
        t.dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(t.part, t.dest)
        t.meta.unlink(missing_ok=True)


class _Hasher:
    """sha256 on a helper thread, so hashing one piece overlaps reading the next from the socket
    (hashlib lets go of the GIL for large buffers)."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.count = 0  # bytes handed to update() since the last reset
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._thread: threading.Thread | None = None

    def update(self, data: bytes) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
            self._thread.start()
        self._queue.put(data)
        self.count += len(data)

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._h.update(data)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def reset(self, h: Any, count: int) -> None:
        self.close()
        self._h, self.count = h, count

    def hexdigest(self) -> str:
        self.close()
        return self._h.hexdigest()


class _Retry(Exception):
    pass


def _write_all(out: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[out.write(view) :]


def _write_error(e: OSError, t: Target) -> DownloadError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"The disk is full while downloading {t.file.name}. Free some space; the download "
            "resumes from where it stopped."
        )
    return DownloadError(f"Cannot write {t.part}: {e.strerror or e}.")


def _hash_file(path: Path, length: int) -> hashlib._Hash:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = length
        while remaining and (block := f.read(min(CHUNK * 8, remaining))):
            h.update(block)
            remaining -= len(block)
    return h

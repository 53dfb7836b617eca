"""The download queue: a few downloads at a time, pause/resume/cancel, and survival across restarts.

Every job is saved to ``downloads.json`` whenever its state changes (not on progress: the bytes
themselves are on disk in the partial folder). At the next start, jobs that were queued or running
resume from those bytes; paused ones stay paused. Each running job has its own thread; the UI
reads ``jobs()`` snapshots (a poll, so no byte count ever crosses a Qt signal).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from app.downloads.transfer import Downloader, Stopped, Target, bytes_on_disk, plan
from app.fileio import atomic_write_text
from app.hub import HubError, RemoteModel, offline

log = logging.getLogger(__name__)
SPEED_WINDOW = 4.0  # seconds of progress that the speed is averaged over


class StopReason(Enum):
    """Why a running download's worker is being stopped (its ``cancel`` event is set)."""

    PAUSE = "pause"  # keep the bytes; resume later
    CANCEL = "cancel"  # delete the bytes and forget the download
    SHUTDOWN = "shutdown"  # Hearth is closing: saved as queued, resumed at the next start


class State(str, Enum):
    QUEUED = "queued"
    ACTIVE = "downloading"
    PAUSED = "paused"
    FAILED = "failed"
    DONE = "done"

    @property
    def in_progress(self) -> bool:
        """Queued or downloading: the job can still change on its own."""
        return self in (State.QUEUED, State.ACTIVE)


@dataclass(frozen=True)
class JobView:
    """A snapshot of one job for display; safe to hand to another thread."""

    id: str
    repo_id: str
    name: str
    quant: str
    state: State
    done: int
    total: int
    speed: float  # bytes per second, 0 when not measured yet
    error: str
    paths: tuple[str, ...]

    @property
    def eta(self) -> float | None:
        if self.state is not State.ACTIVE or self.speed <= 0:
            return None
        return max(self.total - self.done, 0) / self.speed

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass
class _Job:
    model: RemoteModel
    state: State = State.QUEUED
    done: int = 0
    error: str = ""
    paths: list[str] = field(default_factory=list)
    added_at: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)
    stop_reason: StopReason | None = None  # while a stop is under way
    thread: threading.Thread | None = None
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    @property
    def id(self) -> str:
        return job_id(self.model)

    def speed(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 - t0 >= 0.25 else 0.0

    def view(self) -> JobView:
        return JobView(
            self.id,
            self.model.repo_id,
            self.model.name,
            self.model.quant,
            self.state,
            self.done,
            self.model.size,
            self.speed() if self.state is State.ACTIVE else 0.0,
            self.error,
            tuple(self.paths),
        )


def job_id(model: RemoteModel) -> str:
    return f"{model.repo_id}/{model.name}"


class DownloadManager:
    def __init__(
        self,
        models_dir: Path,
        partial_dir: Path,
        state_file: Path,
        token: Callable[[], str | None] = lambda: None,
        concurrency: int = 2,
        downloader: Callable[[str | None], Downloader] = lambda token: Downloader(token=token),
    ) -> None:
        self.models_dir = models_dir
        self.partial_dir = partial_dir
        self.state_file = state_file
        self._token = token
        self._downloader = downloader
        self._concurrency = max(1, concurrency)
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.RLock()
        self._closed = False

    # queries

    def jobs(self) -> list[JobView]:
        with self._lock:
            return [j.view() for j in self._jobs.values()]

    @property
    def busy(self) -> bool:
        with self._lock:
            return any(j.state.in_progress for j in self._jobs.values())

    # commands

    def add(self, model: RemoteModel) -> JobView:
        """Queue ``model``; an existing job for it is resumed (or returned if finished)."""
        with self._lock:
            existing = self._jobs.get(job_id(model))
            if (
                existing
                and existing.state is State.DONE
                and all(Path(p).exists() for p in existing.paths)
            ):
                return existing.view()
            if existing and existing.state.in_progress:
                return existing.view()
            job = _Job(model)
            job.done = self._bytes_on_disk(model)
            self._jobs[job.id] = job
            self._save()
            self._schedule()
            return job.view()

    def pause(self, id_: str) -> None:
        with self._lock:
            job = self._jobs.get(id_)
            if job is None:
                return
            if job.state is State.ACTIVE:
                job.stop_reason = StopReason.PAUSE
                job.cancel.set()  # the worker sets PAUSED once it has stopped
            elif job.state is State.QUEUED:
                job.state = State.PAUSED
                self._save()

    def resume(self, id_: str) -> None:
        with self._lock:
            job = self._jobs.get(id_)
            if job is None:
                return
            if job.state is State.ACTIVE and job.stop_reason is StopReason.PAUSE:
                job.stop_reason = None  # resumed before the pause took effect: it restarts at once
                return
            if job.state not in (State.PAUSED, State.FAILED):
                return
            job.state, job.error = State.QUEUED, ""
            job.done = self._bytes_on_disk(job.model)
            self._save()
            self._schedule()

    def cancel(self, id_: str) -> None:
        """Stop and forget a download, deleting its partial bytes. A finished model stays."""
        with self._lock:
            job = self._jobs.get(id_)
            if job is None:
                return
            if job.state is State.ACTIVE:
                job.stop_reason = StopReason.CANCEL
                job.cancel.set()  # the worker deletes the bytes once it has stopped
                return
            del self._jobs[id_]
            if job.state is not State.DONE:
                self._delete_partial(job.model)
            self._save()

    def clear_finished(self) -> None:
        with self._lock:
            for id_ in [i for i, j in self._jobs.items() if j.state is State.DONE]:
                del self._jobs[id_]
            self._save()

    def set_concurrency(self, n: int) -> None:
        with self._lock:
            self._concurrency = max(1, n)
            self._schedule()

    def kick(self) -> None:
        """Start what is queued (after offline mode is switched off, or a token was added)."""
        with self._lock:
            self._schedule()

    def restore(self) -> None:
        """Load the saved queue; what was queued or running resumes from the bytes on disk."""
        try:
            saved = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("cannot read %s (%s); starting with an empty queue", self.state_file, e)
            return
        with self._lock:
            for entry in saved.get("jobs", []):
                try:
                    job = _Job(
                        RemoteModel.from_json(entry["model"]),
                        State(entry["state"]),
                        error=str(entry.get("error", "")),
                        paths=[str(p) for p in entry.get("paths", [])],
                        added_at=float(entry.get("added_at", time.time())),
                    )
                except (KeyError, TypeError, ValueError, HubError) as e:
                    log.warning("dropping an unreadable download entry (%s)", e)
                    continue
                if job.state is State.ACTIVE:
                    job.state = State.QUEUED
                done = job.state is State.DONE
                job.done = job.model.size if done else self._bytes_on_disk(job.model)
                self._jobs[job.id] = job
            self._schedule()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the running downloads, keeping them queued for the next start."""
        with self._lock:
            self._closed = True
            running = [j for j in self._jobs.values() if j.state is State.ACTIVE]
            for job in running:
                job.stop_reason = StopReason.SHUTDOWN
                job.cancel.set()
            self._save(running_as_queued=True)
        for job in running:
            if job.thread is not None:
                job.thread.join(timeout)

    # internals

    def _schedule(self) -> None:
        if self._closed or offline():
            return
        active = sum(1 for j in self._jobs.values() if j.state is State.ACTIVE)
        for job in sorted(self._jobs.values(), key=lambda j: j.added_at):
            if active >= self._concurrency:
                break
            if job.state is State.QUEUED:
                job.state = State.ACTIVE
                job.cancel = threading.Event()
                job.stop_reason = None
                job.samples.clear()
                job.thread = threading.Thread(
                    target=self._run, args=(job,), name=f"download {job.id}", daemon=True
                )
                active += 1
                job.thread.start()
        # Not saved here: a job saved as queued or as running resumes the same way at start.

    def _run(self, job: _Job) -> None:
        def progress(done: int, _total: int) -> None:
            now = time.monotonic()
            with self._lock:
                job.done = done
                job.samples.append((now, done))
                while len(job.samples) > 2 and now - job.samples[0][0] > SPEED_WINDOW:
                    job.samples.popleft()

        try:
            paths = self._downloader(self._token()).pull(
                job.model, self.models_dir, self.partial_dir, progress, job.cancel
            )
        except Stopped:
            self._stopped(job)
            return
        except HubError as e:
            self._finish(job, State.FAILED, error=str(e))
            return
        except Exception as e:  # a bug must fail one download, not the app
            log.exception("download of %s failed", job.id)
            self._finish(job, State.FAILED, error=f"Unexpected error: {e}")
            return
        self._finish(job, State.DONE, paths=[str(p) for p in paths])

    def _stopped(self, job: _Job) -> None:
        with self._lock:
            reason = job.stop_reason
            if reason is StopReason.SHUTDOWN:
                return  # saved as queued by shutdown()
            if reason is StopReason.CANCEL:
                self._jobs.pop(job.id, None)
                self._delete_partial(job.model)
                self._save()
                self._schedule()
                return
            if reason is StopReason.PAUSE:
                job.state = State.PAUSED
            else:  # resumed before the pause took effect
                job.state = State.QUEUED
            self._save()
            self._schedule()

    def _finish(
        self, job: _Job, state: State, error: str = "", paths: list[str] | None = None
    ) -> None:
        with self._lock:
            job.state, job.error = state, error
            if paths is not None:
                job.paths, job.done = paths, job.model.size
            self._save()
            self._schedule()

    def _targets(self, model: RemoteModel) -> list[Target]:
        try:
            return plan(model, self.models_dir, self.partial_dir)
        except HubError:
            return []

    def _bytes_on_disk(self, model: RemoteModel) -> int:
        return bytes_on_disk(self._targets(model))

    def _delete_partial(self, model: RemoteModel) -> None:
        for t in self._targets(model):
            for p in (t.part, t.meta):
                p.unlink(missing_ok=True)
            # A finished part of a split model is no model on its own.
            if len(model.files) > 1:
                t.dest.unlink(missing_ok=True)

    def _save(self, running_as_queued: bool = False) -> None:
        entries = []
        for job in self._jobs.values():
            state = job.state
            if running_as_queued and state is State.ACTIVE:
                state = State.QUEUED
            entries.append(
                {
                    "model": job.model.to_json(),
                    "state": state.value,
                    "error": job.error,
                    "paths": job.paths,
                    "added_at": job.added_at,
                }
            )
        try:
            atomic_write_text(self.state_file, json.dumps({"version": 1, "jobs": entries}))
        except OSError as e:
            log.warning("cannot save the download queue: %s", e)

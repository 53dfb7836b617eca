"""The Downloads page, and the controller that shows the download queue to the GUI.

The queue (``app.downloads.DownloadManager``) runs its transfers on its own threads. The GUI polls
snapshots a few times a second while anything is queued or running, so byte counts never cross a
Qt signal (PySide6's ``Signal(int)`` is 32-bit) and no worker thread touches a widget.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.downloads import DownloadManager, JobView, State
from app.hub import RemoteModel, offline
from app.model_file import human_size

POLL_MS = 250
CONFIRM_CANCEL_BYTES = 100 * 1000 * 1000


class DownloadsController(QObject):
    changed = Signal(object)  # list[JobView]
    finished = Signal(object)  # JobView of a download that just completed

    def __init__(self, manager: DownloadManager, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.manager = manager
        self._last: list[JobView] = []
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)

    def start(self) -> None:
        self.manager.restore()
        self.poll()

    def jobs(self) -> list[JobView]:
        return list(self._last)

    @Slot()
    def poll(self) -> None:
        jobs = self.manager.jobs()
        before = {j.id: j.state for j in self._last}
        if jobs != self._last:
            self._last = jobs
            self.changed.emit(jobs)
            for j in jobs:
                if j.state is State.DONE and before.get(j.id, State.DONE) is not State.DONE:
                    self.finished.emit(j)
        # Poll only while something can change on its own (a pause or cancel under way counts:
        # its job stays active until the worker has stopped). Judged from the same snapshot: a
        # job that ends between two reads must not leave its last "downloading" view on screen.
        if any(j.state.in_progress for j in jobs):
            if not self._timer.isActive():
                self._timer.start()
        else:
            self._timer.stop()

    def add(self, model: RemoteModel) -> None:
        self.manager.add(model)
        self.poll()

    @Slot(str)
    def pause(self, job_id: str) -> None:
        self.manager.pause(job_id)
        self.poll()

    @Slot(str)
    def resume(self, job_id: str) -> None:
        self.manager.resume(job_id)
        self.poll()

    @Slot(str)
    def cancel(self, job_id: str) -> None:
        self.manager.cancel(job_id)
        self.poll()

    @Slot()
    def clear_finished(self) -> None:
        self.manager.clear_finished()
        self.poll()

    @Slot(int)
    def set_concurrency(self, n: int) -> None:
        self.manager.set_concurrency(n)
        self.poll()

    @Slot()
    def kick(self) -> None:
        self.manager.kick()
        self.poll()

    def shutdown(self) -> None:
        self._timer.stop()
        self.manager.shutdown()


def human_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(int(seconds), 1)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def status_text(job: JobView) -> str:
    amount = f"{human_size(job.done)} of {human_size(job.total)}"
    if job.state is State.ACTIVE:
        if job.speed > 0 and job.eta is not None:
            return f"{human_size(int(job.speed))}/s · {human_duration(job.eta)} left · {amount}"
        return f"Starting… · {amount}"
    if job.state is State.QUEUED:
        if offline():
            return f"Waiting: Hearth is in offline mode (Settings) · {amount}"
        return f"Waiting for another download to finish · {amount}"
    if job.state is State.PAUSED:
        return f"Paused · {amount}"
    if job.state is State.FAILED:
        return job.error
    return f"Downloaded and verified · {human_size(job.total)}"


_URL = re.compile(r"https?://[^\s)]+[^\s).,]")


def _linked(text: str) -> str:
    """Plain text as rich text, its web addresses clickable (e.g. a gated model's page)."""
    escaped = html.escape(text)
    return _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)


@Slot(str)
def _open_link(url: str) -> None:
    QDesktopServices.openUrl(QUrl(url))


class DownloadRow(QFrame):
    """One download: name, progress, speed and time left, and what can be done with it."""

    def __init__(self, page: DownloadsPage, job: JobView) -> None:
        super().__init__()
        self.page = page
        self.job = job
        self.setObjectName("downloadRow")
        self.title = QLabel()
        self.title.setObjectName("downloadTitle")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.status = QLabel()
        self.status.setObjectName("downloadStatus")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.LinksAccessibleByMouse
        )
        self.status.linkActivated.connect(_open_link)
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(self._pause_or_resume)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._cancel)
        self.chat_button = QPushButton("Chat")
        self.chat_button.setObjectName("primaryButton")
        self.chat_button.clicked.connect(self._chat)
        self.folder_button = QPushButton("Show in folder")
        self.folder_button.clicked.connect(self._show_folder)
        self.remove_button = QPushButton("Remove from list")
        self.remove_button.setToolTip("The model stays in your library.")
        self.remove_button.clicked.connect(self._remove)
        buttons = QHBoxLayout()
        buttons.setSpacing(6)
        for b in (
            self.pause_button,
            self.cancel_button,
            self.chat_button,
            self.folder_button,
            self.remove_button,
        ):
            buttons.addWidget(b)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.update_job(job)

    def update_job(self, job: JobView) -> None:
        self.job = job
        self.title.setText(f"<b>{job.repo_id}</b> &nbsp; {job.quant} · {human_size(job.total)}")
        self.progress.setValue(int(job.fraction * 1000))
        self.status.setText(_linked(status_text(job)))
        self.status.setProperty("failed", job.state is State.FAILED)
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
        done = job.state is State.DONE
        self.progress.setVisible(not done)
        self.pause_button.setVisible(not done)
        self.pause_button.setText(
            "Pause" if job.state in (State.ACTIVE, State.QUEUED) else "Resume"
        )
        if job.state is State.FAILED:
            self.pause_button.setText("Retry")
        self.cancel_button.setVisible(not done)
        for b in (self.chat_button, self.folder_button, self.remove_button):
            b.setVisible(done)

    @Slot()
    def _pause_or_resume(self) -> None:
        if self.job.state in (State.ACTIVE, State.QUEUED):
            self.page.pause_requested.emit(self.job.id)
        else:
            self.page.resume_requested.emit(self.job.id)

    @Slot()
    def _cancel(self) -> None:
        if self.job.done >= CONFIRM_CANCEL_BYTES:
            answer = QMessageBox.question(
                self,
                "Cancel download",
                f"Cancel {self.job.repo_id} {self.job.quant} and delete the "
                f"{human_size(self.job.done)} downloaded so far?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.page.cancel_requested.emit(self.job.id)

    @Slot()
    def _chat(self) -> None:
        if self.job.paths:
            self.page.chat_requested.emit(self.job.paths[0])

    @Slot()
    def _show_folder(self) -> None:
        if self.job.paths:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.job.paths[0]).parent)))

    @Slot()
    def _remove(self) -> None:
        self.page.remove_requested.emit(self.job.id)


class DownloadsPage(QWidget):
    pause_requested = Signal(str)
    resume_requested = Signal(str)
    cancel_requested = Signal(str)
    remove_requested = Signal(str)  # a finished job: forget it, keep the model
    clear_finished_requested = Signal()
    concurrency_changed = Signal(int)
    chat_requested = Signal(str)  # path of a downloaded model
    discover_requested = Signal()

    def __init__(self, concurrency: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: dict[str, DownloadRow] = {}
        title = QLabel("<h2>Downloads</h2>")
        self.summary = QLabel()
        self.summary.setObjectName("librarySummary")
        self.concurrency = QSpinBox()
        self.concurrency.setRange(1, 8)
        self.concurrency.setValue(concurrency)
        self.concurrency.setToolTip("How many files download at the same time; the rest wait.")
        self.concurrency.valueChanged.connect(self.concurrency_changed)
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.clicked.connect(self.clear_finished_requested)
        header = QHBoxLayout()
        header.addWidget(title)
        header.addStretch(1)
        header.addWidget(QLabel("At once:"))
        header.addWidget(self.concurrency)
        header.addWidget(self.clear_button)

        self.list_body = QWidget()
        self.list_layout = QVBoxLayout(self.list_body)
        self.list_layout.setContentsMargins(0, 0, 0, 0)
        self.list_layout.setSpacing(8)
        self.list_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.list_body)

        self.empty = QWidget()
        el = QVBoxLayout(self.empty)
        empty_text = QLabel(
            "<h3>No downloads</h3><p>Find a model on <b>Discover</b> and press Download. "
            "Downloads resume where they stopped, even after Hearth is closed, and every "
            "file is checked against the Hub's checksum before it is used.</p>"
        )
        empty_text.setWordWrap(True)
        find = QPushButton("Discover models")
        find.clicked.connect(self.discover_requested)
        el.addWidget(empty_text)
        el.addWidget(find, 0, Qt.AlignmentFlag.AlignLeft)
        el.addStretch(1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 12, 20, 16)
        layout.addLayout(header)
        layout.addWidget(self.summary)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.empty, 1)
        self.scroll = scroll
        self.set_jobs([])

    @Slot(object)
    def set_jobs(self, jobs: list[JobView]) -> None:
        ids = [j.id for j in jobs]
        for gone in set(self.rows) - set(ids):
            row = self.rows.pop(gone)
            row.setParent(None)
            row.deleteLater()
        # Newest first, as in a browser's download list.
        for position, job in enumerate(reversed(jobs)):
            row = self.rows.get(job.id)
            if row is None:
                row = self.rows[job.id] = DownloadRow(self, job)
            elif row.job != job:
                row.update_job(job)
            if self.list_layout.indexOf(row) != position:
                self.list_layout.insertWidget(position, row)
        self.scroll.setVisible(bool(jobs))
        self.empty.setVisible(not jobs)
        counts = Counter(j.state for j in jobs)
        speed = sum(j.speed for j in jobs)
        words = {
            State.ACTIVE: f"downloading at {human_size(int(speed))}/s",
            State.QUEUED: "waiting",
            State.PAUSED: "paused",
            State.FAILED: "failed",
            State.DONE: "finished",
        }
        self.summary.setText(
            " · ".join(f"{counts[state]} {word}" for state, word in words.items() if counts[state])
        )
        self.clear_button.setEnabled(bool(counts[State.DONE]))

"""The Downloads page, and the controller that shows the download queue to the GUI.

The queue (``app.downloads.DownloadManager``) runs its transfers on its own threads. The GUI polls
snapshots a few times a second while anything is queued or running, so byte counts never cross a
Qt signal (PySide6's ``Signal(int)`` is 32-bit) and no worker thread touches a widget. The page
shows them through ``ui.download_list`` (model, delegate, view); its buttons act on the selected
row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QModelIndex, QObject, QPoint, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QMenu,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.downloads import DownloadManager, JobView, State
from app.hub import RemoteModel
from app.settings import RANGES
from app.units import human_size
from ui.download_list import (
    DownloadDelegate,
    DownloadListModel,
    DownloadListView,
    DownloadRole,
)

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


class DownloadsPage(QWidget):
    """The queue as a list of cards; the buttons under it act on the selected download."""

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
        title = QLabel("<h2>Downloads</h2>")
        self.summary = QLabel()
        self.summary.setObjectName("librarySummary")
        self.summary.setWordWrap(True)  # a long summary must not widen the page
        self.concurrency = QSpinBox()
        self.concurrency.setRange(*RANGES["download_concurrency"])
        self.concurrency.setValue(concurrency)
        self.concurrency.setAccessibleName("Downloads at once")
        self.concurrency.setToolTip("How many files download at the same time; the rest wait.")
        self.concurrency.valueChanged.connect(self.concurrency_changed)
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.setToolTip("Remove every finished download from the list.")
        self.clear_button.clicked.connect(self.clear_finished_requested)
        header = QHBoxLayout()
        header.addWidget(title)
        header.addStretch(1)
        at_once = QLabel("At once:")
        at_once.setBuddy(self.concurrency)
        header.addWidget(at_once)
        header.addWidget(self.concurrency)
        header.addWidget(self.clear_button)

        self.model = DownloadListModel(self)
        self.list = DownloadListView()
        self.list.setModel(self.model)
        self.list.setItemDelegate(DownloadDelegate(self.list))
        self.list.setAccessibleName("Downloads")
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setSpacing(4)
        self.list.setFrameShape(QFrame.Shape.NoFrame)
        self.list.viewport().setBackgroundRole(QPalette.ColorRole.Window)  # cards on the page
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.activated.connect(self._activated)
        self.list.selectionModel().currentChanged.connect(self._current_changed)
        QShortcut(
            QKeySequence(QKeySequence.StandardKey.Delete),
            self.list,
            self._delete,
            Qt.ShortcutContext.WidgetShortcut,
        )

        self.pause_button = self._button("Pause", self._pause_or_resume)
        self.cancel_button = self._button("Cancel", self._cancel)
        self.chat_button = self._button("Chat", self._chat)
        self.chat_button.setObjectName("primaryButton")
        self.folder_button = self._button("Show in folder", self._show_folder)
        self.remove_button = self._button("Remove from list", self._remove)
        self.link_button = self._button("Open page", self._open_link)
        self.buttons = (
            self.pause_button,
            self.cancel_button,
            self.chat_button,
            self.folder_button,
            self.remove_button,
            self.link_button,
        )
        actions = QHBoxLayout()
        actions.setContentsMargins(5, 0, 5, 0)  # in line with the cards' edges
        actions.setSpacing(6)
        for b in self.buttons:
            actions.addWidget(b)
        actions.addStretch(1)

        # The list is as tall as its cards, so the buttons sit right under them; with many
        # downloads it fills the page and scrolls.
        self.list.setSizeAdjustPolicy(QListView.SizeAdjustPolicy.AdjustToContents)
        self.list.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.list_area = QWidget()
        la = QVBoxLayout(self.list_area)
        la.setContentsMargins(0, 0, 0, 0)
        la.addWidget(self.list)
        la.addLayout(actions)
        la.addStretch(1)

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
        layout.addWidget(self.list_area, 1)
        layout.addWidget(self.empty, 1)
        previous: QWidget = self.list
        for b in self.buttons:  # Tab goes from the list to its buttons, left to right
            QWidget.setTabOrder(previous, b)
            previous = b
        self.set_jobs([])

    def _button(self, text: str, slot: Callable[[], None]) -> QPushButton:
        button = QPushButton(text)
        button.setAutoDefault(True)  # Enter presses it, as Space does
        button.clicked.connect(slot)
        return button

    @Slot(object)
    def set_jobs(self, jobs: list[JobView]) -> None:
        added = self.model.set_jobs(jobs)
        current = self.list.currentIndex()
        if added:  # a new download is what the user wants to see and act on
            current = self.model.index(self.model.row_of(added[0]))
        elif not current.isValid() and self.model.rowCount():
            current = self.model.index(0)
        if current.isValid() and not self.list.selectionModel().isSelected(current):
            self.list.setCurrentIndex(current)
        self._update_actions()
        self.list_area.setVisible(bool(jobs))
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

    def current_job(self) -> JobView | None:
        """The selected download, which the buttons under the list act on."""
        index = self.list.currentIndex()
        return self.model.job(index.row()) if index.isValid() else None

    def select(self, job_id: str) -> None:
        row = self.model.row_of(job_id)
        if row >= 0:
            self.list.setCurrentIndex(self.model.index(row))

    @Slot(QModelIndex, QModelIndex)
    def _current_changed(self, _current: QModelIndex, _previous: QModelIndex) -> None:
        self._update_actions()

    def _update_actions(self) -> None:
        had_focus = any(b.hasFocus() for b in self.buttons)
        job = self.current_job()
        state = job.state if job else None
        done = state is State.DONE
        self.pause_button.setText(
            "Pause"
            if state in (State.ACTIVE, State.QUEUED)
            else "Retry"
            if state is State.FAILED
            else "Resume"
        )
        link = self.list.currentIndex().data(DownloadRole.Link) or ""
        shown = {
            self.pause_button: job is not None and not done,
            self.cancel_button: job is not None and not done,
            self.chat_button: done,
            self.folder_button: done,
            self.remove_button: done,
            self.link_button: bool(link),
        }
        # Hide before showing: showing a button lays the window out at once, and the buttons of
        # two states side by side would widen a narrow window for good.
        for b, visible in sorted(shown.items(), key=lambda item: item[1]):
            b.setVisible(visible)
        self.link_button.setToolTip(link)
        name = f"{job.repo_id} {job.quant}" if job else ""
        for b in self.buttons:
            b.setAccessibleName(f"{b.text()} {name}".strip())  # what it acts on, said aloud
        self.chat_button.setToolTip(f"A new chat with {name}")
        self.remove_button.setToolTip("The model stays in your library.")
        if had_focus and not any(b.hasFocus() for b in self.buttons):
            self.list.setFocus()  # the pressed button went away with its row's state

    @Slot(QPoint)
    def _menu(self, pos: QPoint) -> None:
        index = self.list.indexAt(pos)
        if not index.isValid():
            return
        self.list.setCurrentIndex(index)
        menu = QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        for b in self.buttons:
            if not b.isHidden():
                menu.addAction(b.text(), b.click)
        menu.popup(self.list.viewport().mapToGlobal(pos))

    @Slot(QModelIndex)
    def _activated(self, _index: QModelIndex) -> None:
        """Enter or a double click: the obvious next step (chat, resume, retry)."""
        job = self.current_job()
        if job is None:
            return
        if job.state is State.DONE:
            self._chat()
        elif job.state in (State.PAUSED, State.FAILED):
            self.resume_requested.emit(job.id)

    @Slot()
    def _delete(self) -> None:
        job = self.current_job()
        if job is not None:
            (self._remove if job.state is State.DONE else self._cancel)()

    @Slot()
    def _pause_or_resume(self) -> None:
        job = self.current_job()
        if job is None:
            return
        if job.state in (State.ACTIVE, State.QUEUED):
            self.pause_requested.emit(job.id)
        else:
            self.resume_requested.emit(job.id)

    @Slot()
    def _cancel(self) -> None:
        job = self.current_job()
        if job is None:
            return
        if job.done >= CONFIRM_CANCEL_BYTES:
            answer = QMessageBox.question(
                self,
                "Cancel download",
                f"Cancel {job.repo_id} {job.quant} and delete the "
                f"{human_size(job.done)} downloaded so far?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.cancel_requested.emit(job.id)

    @Slot()
    def _chat(self) -> None:
        job = self.current_job()
        if job is not None and job.paths:
            self.chat_requested.emit(job.paths[0])

    @Slot()
    def _show_folder(self) -> None:
        job = self.current_job()
        if job is not None and job.paths:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(job.paths[0]).parent)))

    @Slot()
    def _remove(self) -> None:
        job = self.current_job()
        if job is not None:
            self.remove_requested.emit(job.id)

    @Slot()
    def _open_link(self) -> None:
        link = self.list.currentIndex().data(DownloadRole.Link)
        if link:
            QDesktopServices.openUrl(QUrl(link))

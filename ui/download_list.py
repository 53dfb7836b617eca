"""The download list as model/view: a list model over the queue's snapshots, and its delegate.

The model is a thin adapter over ``JobView`` snapshots (newest first, as in a browser). Each poll
hands it the whole queue; it matches rows by download id, so a poll inserts, removes or moves
only the rows that did, and names in ``dataChanged`` only the roles whose values differ.
"""

from __future__ import annotations

import enum
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractListModel,
    QByteArray,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRect,
    QRectF,
    QSize,
    Qt,
    QUrl,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QDesktopServices,
    QFont,
    QFontMetrics,
    QMouseEvent,
    QPainter,
    QPalette,
    QPen,
    QTextDocument,
)
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app.downloads import JobView, State
from app.hub import offline
from app.units import human_size, long_duration
from ui.item_models import with_role_names

_Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()
FAILED_COLOR = "#c62828"  # as the theme's failed status
FAILED_ON_DARK = "#ef6f6f"  # the same red, readable on a dark card


def status_text(job: JobView) -> str:
    amount = f"{human_size(job.done)} of {human_size(job.total)}"
    if job.state is State.ACTIVE:
        if job.speed > 0 and job.eta is not None:
            return f"{human_size(int(job.speed))}/s · {long_duration(job.eta)} left · {amount}"
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


def linked(text: str) -> str:
    """Plain text as rich text, its web addresses clickable (e.g. a gated model's page)."""
    escaped = html.escape(text)
    return _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)


def first_link(text: str) -> str:
    m = _URL.search(text)
    return m.group(0) if m else ""


class DownloadRole(enum.IntEnum):
    Id = Qt.ItemDataRole.UserRole + 1
    Job = enum.auto()  # the JobView itself
    RepoId = enum.auto()
    FileName = enum.auto()
    Quant = enum.auto()
    State = enum.auto()  # the State's value: Qt hands a str enum over as a plain str
    Done = enum.auto()
    Total = enum.auto()
    Speed = enum.auto()  # bytes per second
    Eta = enum.auto()  # seconds left, or None
    Progress = enum.auto()  # per mille, 0..1000
    Status = enum.auto()  # the line under the progress bar: speed and time left, or the error
    Link = enum.auto()  # the first web address in the status (a gated model's page), or ""
    Paths = enum.auto()


def _title(j: JobView) -> str:
    return f"{j.repo_id} {j.quant} · {human_size(j.total)}"


# What each role shows of a snapshot. One table serves data() and the change detection, so a
# poll's dataChanged names exactly the roles whose values differ.
_VALUES: dict[int, Callable[[JobView], Any]] = {
    Qt.ItemDataRole.DisplayRole: _title,
    Qt.ItemDataRole.ToolTipRole: lambda j: "\n".join((j.repo_id, j.name, status_text(j))),
    Qt.ItemDataRole.AccessibleTextRole: lambda j: f"{_title(j)}. {status_text(j)}",
    DownloadRole.Id: lambda j: j.id,
    DownloadRole.Job: lambda j: j,
    DownloadRole.RepoId: lambda j: j.repo_id,
    DownloadRole.FileName: lambda j: j.name,
    DownloadRole.Quant: lambda j: j.quant,
    DownloadRole.State: lambda j: j.state.value,
    DownloadRole.Done: lambda j: j.done,
    DownloadRole.Total: lambda j: j.total,
    DownloadRole.Speed: lambda j: j.speed,
    DownloadRole.Eta: lambda j: j.eta,
    DownloadRole.Progress: lambda j: int(j.fraction * 1000),
    DownloadRole.Status: status_text,
    DownloadRole.Link: lambda j: first_link(status_text(j)) if j.state is State.FAILED else "",
    DownloadRole.Paths: lambda j: list(j.paths),
}


class DownloadListModel(QAbstractListModel):
    """The download queue, newest first, one row per download."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[JobView] = []

    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._jobs)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._jobs):
            return None
        value = _VALUES.get(role)
        return value(self._jobs[index.row()]) if value else None

    def roleNames(self) -> dict[int, QByteArray]:
        names = {r: (r.name[0].lower() + r.name[1:]).encode() for r in DownloadRole}
        return with_role_names(super().roleNames(), names)

    def job(self, row: int) -> JobView:
        return self._jobs[row]

    def row_of(self, job_id: str) -> int:
        return next((i for i, j in enumerate(self._jobs) if j.id == job_id), -1)

    def set_jobs(self, jobs: list[JobView]) -> list[str]:
        """Show the queue ``jobs`` (oldest first, as the manager lists them).

        Returns:
            The ids of the downloads that were not shown before, topmost first.
        """
        target = list(reversed(jobs))
        wanted = {j.id for j in target}
        row = len(self._jobs) - 1
        while row >= 0:  # bottom up, one contiguous run at a time
            if self._jobs[row].id in wanted:
                row -= 1
                continue
            last = row
            while row > 0 and self._jobs[row - 1].id not in wanted:
                row -= 1
            self.beginRemoveRows(_ROOT, row, last)
            del self._jobs[row : last + 1]
            self.endRemoveRows()
            row -= 1
        added: list[str] = []
        for i, job in enumerate(target):
            if i < len(self._jobs) and self._jobs[i].id == job.id:
                self._update(i, job)
                continue
            old = self.row_of(job.id)  # below i: everything above is in place already
            if old >= 0:
                self.beginMoveRows(_ROOT, old, old, _ROOT, i)
                self._jobs.insert(i, self._jobs.pop(old))
                self.endMoveRows()
                self._update(i, job)
            else:
                self.beginInsertRows(_ROOT, i, i)
                self._jobs.insert(i, job)
                self.endInsertRows()
                added.append(job.id)
        return added

    def _update(self, row: int, job: JobView) -> None:
        old = self._jobs[row]
        if old == job:
            return
        roles = [role for role, value in _VALUES.items() if value(old) != value(job)]
        self._jobs[row] = job
        index = self.index(row)
        self.dataChanged.emit(index, index, roles)


@dataclass(frozen=True)
class _Layout:
    card: QRect
    title: QRect
    bar: QRect | None
    status: QPointF  # where the status document's top left goes
    document: QTextDocument


class DownloadDelegate(QStyledItemDelegate):
    """A card per download: name, a thin progress bar, and the status line (links clickable)."""

    PAD = 12
    GAP = 6
    BAR = 8

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        width = option.rect.width()
        view = option.widget
        if isinstance(view, QListView):
            width = view.viewport().width() - 2 * view.spacing()
        layout = self._layout(option, index, QRect(0, 0, max(width, 120), 0))
        bottom = layout.status.y() + layout.document.size().height()
        return QSize(max(width, 120), int(bottom) + self.PAD)

    def _layout(self, option: QStyleOptionViewItem, index: _Index, rect: QRect) -> _Layout:
        card = rect.adjusted(1, 1, -1, -1)
        inner = card.adjusted(self.PAD, self.PAD - 2, -self.PAD, -self.PAD)
        bold = QFont(option.font)
        bold.setBold(True)
        title = QRect(inner.left(), inner.top(), inner.width(), QFontMetrics(bold).height())
        y = title.bottom() + 1 + self.GAP
        bar = None
        if State(index.data(DownloadRole.State)) is not State.DONE:
            bar = QRect(inner.left(), y, inner.width(), self.BAR)
            y = bar.bottom() + 1 + self.GAP
        document = self._status_document(option, index, inner.width())
        return _Layout(card, title, bar, QPointF(inner.left(), y), document)

    def _status_document(
        self, option: QStyleOptionViewItem, index: _Index, width: int
    ) -> QTextDocument:
        palette: QPalette = option.palette
        failed = State(index.data(DownloadRole.State)) is State.FAILED
        dark = palette.base().color().lightness() < 128
        if failed:
            color = FAILED_ON_DARK if dark else FAILED_COLOR
        else:
            color = palette.placeholderText().color().name()
        document = QTextDocument()
        document.setDocumentMargin(0)
        document.setDefaultFont(option.font)
        document.setDefaultStyleSheet(f"a {{ color: {palette.link().color().name()}; }}")
        document.setHtml(
            f'<span style="color: {color}">{linked(index.data(DownloadRole.Status) or "")}</span>'
        )
        document.setTextWidth(max(width, 1))
        return document

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        palette: QPalette = option.palette
        state = option.state
        selected = bool(state & QStyle.StateFlag.State_Selected)
        focused = bool(state & QStyle.StateFlag.State_HasFocus)
        layout = self._layout(option, index, option.rect)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if selected:
            border = QPen(palette.highlight().color(), 2.5 if focused else 1.5)
        else:
            border = QPen(palette.midlight().color(), 1)
        painter.setPen(border)
        painter.setBrush(palette.base())
        painter.drawRoundedRect(QRectF(layout.card), 8, 8)

        bold = QFont(option.font)
        bold.setBold(True)
        name = str(index.data(DownloadRole.RepoId) or "")
        quant = index.data(DownloadRole.Quant) or ""
        rest = f"   {quant} · {human_size(index.data(DownloadRole.Total) or 0)}"
        fm_bold, fm = QFontMetrics(bold), QFontMetrics(option.font)
        room = layout.title.width()
        name = fm_bold.elidedText(
            name, Qt.TextElideMode.ElideMiddle, max(room - fm.horizontalAdvance(rest), room // 2)
        )
        painter.setPen(palette.text().color())
        painter.setFont(bold)
        align = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter.drawText(layout.title, align, name)
        after = layout.title.adjusted(fm_bold.horizontalAdvance(name), 0, 0, 0)
        painter.setFont(option.font)
        painter.drawText(
            after, align, fm.elidedText(rest, Qt.TextElideMode.ElideRight, after.width())
        )

        if layout.bar is not None:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(palette.alternateBase())
            painter.drawRoundedRect(QRectF(layout.bar), 4, 4)
            per_mille = int(index.data(DownloadRole.Progress) or 0)
            if per_mille > 0:
                done = QRectF(layout.bar)
                done.setWidth(max(done.width() * per_mille / 1000, done.height()))
                painter.setBrush(palette.highlight())
                painter.drawRoundedRect(done, 4, 4)

        painter.translate(layout.status)
        context = QAbstractTextDocumentLayout.PaintContext()
        context.palette.setColor(QPalette.ColorRole.Text, palette.text().color())
        layout.document.documentLayout().draw(painter, context)
        painter.restore()

    def link_at(self, option: QStyleOptionViewItem, index: _Index, pos: QPoint) -> str:
        """The web address under ``pos`` (viewport coordinates) in the row's status, or ""."""
        layout = self._layout(option, index, option.rect)
        return layout.document.documentLayout().anchorAt(QPointF(pos) - layout.status)

    def editorEvent(
        self,
        event: QEvent,
        model: QAbstractItemModel,
        option: QStyleOptionViewItem,
        index: _Index,
    ) -> bool:
        # A link in the status line (a gated model's page, to accept its terms) opens on click;
        # the page's "Open page" button is the keyboard's way to the same address.
        if (
            event.type() == QEvent.Type.MouseButtonRelease
            and isinstance(event, QMouseEvent)
            and event.button() == Qt.MouseButton.LeftButton
        ):
            link = self.link_at(option, index, event.position().toPoint())
            if link:
                QDesktopServices.openUrl(QUrl(link))
                return True
        return super().editorEvent(event, model, option, index)


class DownloadListView(QListView):
    """A list of download cards; Qt lays the rows out again when their size hints change."""

    def viewportSizeHint(self) -> QSize:
        # QListView's own hint leaves out the spacing, which would put a scroll bar on a list
        # that is meant to be just as tall as its cards (see the size adjust policy).
        model = self.model()
        if model is None or not model.rowCount():
            return super().viewportSizeHint()
        rows = [self.sizeHintForIndex(model.index(r, 0)) for r in range(model.rowCount())]
        height = sum(r.height() + 2 * self.spacing() for r in rows)  # spacing on both sides
        return QSize(max(r.width() for r in rows) + 2 * self.spacing(), height)

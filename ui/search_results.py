"""Search over every conversation: the search box, the hits' model and how a hit is drawn."""

from __future__ import annotations

import enum
import html
import time
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QFont,
    QKeyEvent,
    QPainter,
    QPalette,
    QTextDocument,
)
from PySide6.QtWidgets import QLineEdit, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from app.chats.search import SearchHit
from ui.item_models import with_role_names

_Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()


class SearchHitRole(enum.IntEnum):
    ConversationId = Qt.ItemDataRole.UserRole + 1
    MessageId = enum.auto()
    Title = enum.auto()
    Snippet = enum.auto()  # rich text: the matches in bold, the rest escaped
    CreatedAt = enum.auto()


def when_text(stamp: float, now: float | None = None) -> str:
    """A hit's date as a list shows it: the time today, the day this year, else the year too."""
    moment, today = time.localtime(stamp), time.localtime(now if now is not None else time.time())
    if moment[:3] == today[:3]:
        return time.strftime("%H:%M", moment)
    if moment.tm_year == today.tm_year:
        return f"{time.strftime('%b', moment)} {moment.tm_mday}"
    return f"{time.strftime('%b', moment)} {moment.tm_mday}, {moment.tm_year}"


class SearchHitListModel(QAbstractListModel):
    """The messages matching a search, as the store gives them (the newest first)."""

    def __init__(self) -> None:
        super().__init__()
        self._hits: list[SearchHit] = []

    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._hits)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._hits):
            return None
        hit = self._hits[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{hit.title}: {hit.snippet}"
        if role in (Qt.ItemDataRole.AccessibleTextRole, Qt.ItemDataRole.ToolTipRole):
            who = "You" if hit.role == "user" else "Reply" if hit.role == "assistant" else "System"
            return f"{hit.title}, {when_text(hit.created_at)}. {who}: {hit.snippet}"
        if role == SearchHitRole.ConversationId:
            return hit.conversation_id
        if role == SearchHitRole.MessageId:
            return hit.message_id
        if role == SearchHitRole.Title:
            return hit.title
        if role == SearchHitRole.Snippet:
            return hit.marked("<b>", "</b>", html.escape)
        if role == SearchHitRole.CreatedAt:
            return hit.created_at
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        return with_role_names(
            super().roleNames(),
            {
                SearchHitRole.ConversationId: b"conversationId",
                SearchHitRole.MessageId: b"messageId",
                SearchHitRole.Title: b"title",
                SearchHitRole.Snippet: b"snippet",
                SearchHitRole.CreatedAt: b"createdAt",
            },
        )

    def set_hits(self, hits: list[SearchHit]) -> None:
        self.beginResetModel()
        self._hits = list(hits)
        self.endResetModel()

    def hit(self, row: int) -> SearchHit:
        return self._hits[row]


class SearchHitDelegate(QStyledItemDelegate):
    """A hit as two parts: its chat's title with the date, and the snippet with the match bold."""

    SNIPPET_LINES = 2
    PADDING = 6

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        line = option.fontMetrics.lineSpacing()
        return QSize(option.rect.width(), line * (1 + self.SNIPPET_LINES) + 2 * self.PADDING + 2)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        widget: QWidget | None = opt.widget
        style = widget.style() if widget is not None else None
        if style is not None:  # the selection and hover background, as the list draws them
            style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, opt, painter, widget)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        color = opt.palette.color(text_role)
        rect = opt.rect.adjusted(self.PADDING, self.PADDING, -self.PADDING, -self.PADDING)
        metrics = opt.fontMetrics
        line = metrics.lineSpacing()

        painter.save()
        when = when_text(index.data(SearchHitRole.CreatedAt))
        when_width = metrics.horizontalAdvance(when) + self.PADDING
        muted = (
            QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.PlaceholderText
        )
        painter.setPen(opt.palette.color(muted))
        head = QRect(rect.left(), rect.top(), rect.width(), line)
        painter.drawText(head, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, when)
        title_font = QFont(opt.font)
        title_font.setWeight(QFont.Weight.DemiBold)
        painter.setFont(title_font)
        painter.setPen(color)
        title_rect = head.adjusted(0, 0, -when_width, 0)
        title = painter.fontMetrics().elidedText(
            index.data(SearchHitRole.Title), Qt.TextElideMode.ElideRight, title_rect.width()
        )
        painter.drawText(
            title_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, title
        )

        doc = QTextDocument()
        doc.setDefaultFont(opt.font)
        doc.setDocumentMargin(0)
        doc.setTextWidth(rect.width())
        doc.setHtml(index.data(SearchHitRole.Snippet))
        body = QRect(rect.left(), rect.top() + line + 2, rect.width(), line * self.SNIPPET_LINES)
        painter.translate(body.topLeft())
        painter.setClipRect(QRect(0, 0, body.width(), body.height()))
        context = QAbstractTextDocumentLayout.PaintContext()
        context.palette.setColor(QPalette.ColorRole.Text, color)
        doc.documentLayout().draw(painter, context)
        painter.restore()


class SearchField(QLineEdit):
    """The search box: Esc empties it, Down goes to the results, Enter opens the first hit."""

    down = Signal()
    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self.text():
            self.clear()
            return
        if event.key() == Qt.Key.Key_Down:
            self.down.emit()
            return
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.submitted.emit()
            return
        super().keyPressEvent(event)

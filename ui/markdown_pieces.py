"""The pieces a Markdown view is made of: rich text that fits its content, plain text that
lays out only what is in sight, and a big block's start with "Show all" (a table's rows then in
a table view). Code blocks are in ``ui.code_block``."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    QUrl,
    Slot,
)
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextCursor, QTextOption
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QTableView,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.markdown_blocks import (
    HEAD_CHARS,
    HEAD_COST,
    HEAD_LINES,
    TABLE_LINES,
    VIEW_LINE_CHARS,
    head_end,
    render_cost,
    safe_cut,
    table_cells,
)
from app.markdown_render import COPY_SCHEME, MarkdownRenderer, plain_to_html

VIEW_LINES = 30  # the height, in lines, of a revealed big block (it scrolls inside)
COPIED_MS = 1500  # how long Copy says "Copied"


def copy_with_feedback(text: str, button: QToolButton) -> None:
    QGuiApplication.clipboard().setText(text)
    label = button.text()
    button.setText("Copied ✓")  # it worked: said where the user looks
    # Timed on the button: a view rebuilt meanwhile takes the timer with it.
    QTimer.singleShot(COPIED_MS, button, lambda: button.setText(label))


class MessageText(QTextBrowser):
    """Selectable rich text whose height follows its content (no inner scroll bar)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setOpenLinks(False)  # links open in the browser only when clicked, never inline
        self.anchorClicked.connect(self._open_link)
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self.document().setDocumentMargin(2)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)

    def loadResource(self, kind: int, url: QUrl | str) -> Any:
        return None  # nothing in a reply may load a file or fetch a URL

    @Slot(QUrl)
    def _open_link(self, url: QUrl) -> None:
        if url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)
        elif url.scheme() == COPY_SCHEME:  # the Copy link of code inside a list or quote
            try:
                code = base64.urlsafe_b64decode(url.path()).decode()
            except (binascii.Error, UnicodeDecodeError):
                return
            QGuiApplication.clipboard().setText(code)
            href = url.toString()
            self._relabel(href, "Copied ✓")  # it worked: said where the user looks
            QTimer.singleShot(COPIED_MS, self, lambda: self._relabel(href, "Copy"))

    def _relabel(self, href: str, label: str) -> None:
        """Set the text of the link to ``href`` (a Copy link) to ``label``."""
        block = self.document().firstBlock()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                if fragment.charFormat().anchorHref() == href:
                    cursor = QTextCursor(self.document())
                    cursor.setPosition(fragment.position())
                    end = fragment.position() + fragment.length()
                    cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
                    cursor.insertText(label, fragment.charFormat())
                    return
                it += 1
            block = block.next()

    @Slot()
    def _fit(self) -> None:
        height = int(self.document().size().height()) + 4
        if height != self.height():
            self.setFixedHeight(height)


class TextView(QPlainTextEdit):
    """Read-only plain text that lays out only what is in sight; as tall as its lines up to
    ``max_lines``, then it scrolls inside."""

    def __init__(self, wrap: bool, max_lines: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.max_lines = max_lines
        self.setReadOnly(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        if wrap:
            self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
            self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        else:
            self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._column = 0  # length of the last display line (long lines are broken for display)
        self.broken = False  # whether a line was broken for display
        self.horizontalScrollBar().rangeChanged.connect(self._fit)
        self.document().blockCountChanged.connect(self._fit)

    def append_text(self, text: str) -> None:
        """``text`` added at the end, its lines broken every ``VIEW_LINE_CHARS`` characters: Qt
        lays out a line whole (a megabyte line takes ~0.4 s)."""
        parts = text.split("\n")
        last = len(parts[-1]) + (self._column if len(parts) == 1 else 0)
        if (
            self._column + len(parts[0]) <= VIEW_LINE_CHARS
            and max(map(len, parts)) <= (VIEW_LINE_CHARS)
            and last <= VIEW_LINE_CHARS
        ):
            self._column = last  # no line to break: the usual case, in one go
            self._insert(text)
            return
        out: list[str] = []
        for i, part in enumerate(parts):
            if i:
                out.append("\n")
                self._column = 0
            pos = 0
            while self._column + len(part) - pos > VIEW_LINE_CHARS:
                cut = safe_cut(part, pos + VIEW_LINE_CHARS - self._column)
                if cut <= pos:
                    cut = pos + VIEW_LINE_CHARS - self._column
                out.append(part[pos:cut] + "\n")
                pos, self._column = cut, 0
                self.broken = True
            out.append(part[pos:])
            self._column += len(part) - pos
        self._insert("".join(out))

    def _insert(self, text: str) -> None:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)

    def restart(self) -> None:
        self.clear()
        self._column = 0
        self.broken = False

    def set_max_lines(self, lines: int) -> None:
        self.max_lines = lines
        self._fit()

    def line_height(self) -> float:
        return float(self.fontMetrics().lineSpacing())

    @Slot()
    def _fit(self) -> None:
        # One line per block when not wrapping; when wrapping, lines are counted from layout.
        if self.lineWrapMode() == QPlainTextEdit.LineWrapMode.NoWrap:
            lines = self.document().blockCount()
        else:
            lines = int(self.document().documentLayout().documentSize().height())
        shown = min(lines, self.max_lines)
        scrolls = lines > self.max_lines
        self.setVerticalScrollBarPolicy(
            Qt.ScrollBarPolicy.ScrollBarAsNeeded
            if scrolls
            else Qt.ScrollBarPolicy.ScrollBarAlwaysOff
        )
        bar = self.horizontalScrollBar()
        extra = bar.sizeHint().height() if bar.maximum() > 0 else 0
        margin = 2 * self.document().documentMargin() + 2 * self.frameWidth()
        height = int(shown * self.line_height() + margin) + extra + 2
        if height != self.height():
            self.setFixedHeight(height)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        if self.lineWrapMode() != QPlainTextEdit.LineWrapMode.NoWrap:
            self._fit()


class TableModel(QAbstractTableModel):
    """A Markdown table's rows as written, split into cells when shown."""

    def __init__(self, header: str, rows: list[str]) -> None:
        super().__init__()
        self.header = table_cells(header)
        self.rows = rows
        self._cells: dict[int, list[str]] = {}

    def append(self, rows: list[str]) -> None:
        if rows:
            n = len(self.rows)
            self.beginInsertRows(QModelIndex(), n, n + len(rows) - 1)
            self.rows.extend(rows)
            self.endInsertRows()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.header)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        row = index.row()
        cells = self._cells.get(row)
        if cells is None:
            if len(self._cells) > 2_000:
                self._cells.clear()
            cells = self._cells[row] = table_cells(self.rows[row])
        return cells[index.column()] if index.column() < len(cells) else ""

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self.header[section] if section < len(self.header) else ""
        return str(section + 1)


class LongBlock(QFrame):
    """Prose too big to render at once (a huge table, a megabyte line): its first lines, and
    "Show all", which shows the rest in a view that lays out only what is in sight."""

    def __init__(self, renderer: MarkdownRenderer, table: bool, plain: bool = False) -> None:
        super().__init__()
        self.setObjectName("longBlock")
        self.renderer = renderer
        self.table = table
        self.plain = plain  # text shown as typed (a user's message), not Markdown
        self.head = MessageText()
        self.head.setAccessibleName("The start of a long block")
        self.note = QLabel()
        self.note.setObjectName("messageFooter")
        self.more = QPushButton()
        self.more.clicked.connect(self.show_all)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.note)
        row.addWidget(self.more)
        row.addStretch(1)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(2)
        self._layout.addWidget(self.head)
        self._layout.addLayout(row)
        self.full: TextView | QTableView | None = None
        self._source = ""
        self._start = self._end = self._head_end = self._taken = 0
        self._lines = 0

    def set_source(self, source: str, start: int, end: int) -> None:
        """The block is ``source[start:end]``; while it streams each call extends the last."""
        if self._end == 0:
            self._start = self._end = start
            lines = TABLE_LINES if self.table else HEAD_LINES
            self._head_end = head_end(source, start, end, lines, HEAD_CHARS)
            while render_cost(source, start, self._head_end) > HEAD_COST:  # dense markup
                self._head_end = safe_cut(source, start + (self._head_end - start) // 2)
        self._lines += source.count("\n", self._end, end)
        self._source, self._end = source, end
        if self.full is not None:
            self._take()
        self._update_note()

    def head_cost(self) -> int:
        return render_cost(self._source, self._start, self._head_end)

    def render_head(self) -> None:
        head = self._source[self._start : self._head_end]
        self.head.setHtml(plain_to_html(head) if self.plain else self.renderer.render(head))

    def _update_note(self) -> None:
        if self.full is not None:
            self.note.hide()
            self.more.hide()
            return
        end = self._end  # without the blank lines after the block
        while end > self._head_end and self._source[end - 1] in "\n\r \t":
            end -= 1
        if self.table:
            shown = max(0, self._source.count("\n", self._start, self._head_end) - 2)
            # Lines, less the header and delimiter rows; a last row without its line break counts.
            rows = self._lines - self._source.count("\n", end, self._end) - 1
            text = f"Showing {shown:,} of {rows:,} rows."
            more = f"Show all {rows:,} rows"
        else:
            size = end - self._start
            text = f"Showing {self._head_end - self._start:,} of {size:,} characters."
            more = "Show all"
        if self.note.text() != text:
            self.note.setText(text)
            self.more.setText(more)

    def _take(self) -> None:
        if isinstance(self.full, QTableView):
            model = self.full.model()
            assert isinstance(model, TableModel)
            end = self._source.rfind("\n", self._taken, self._end) + 1  # whole rows only
            if end > self._taken:
                rows = self._source[self._taken : end].splitlines()
                model.append([row for row in rows if row.strip()])
                self._taken = end
        elif isinstance(self.full, TextView):
            self.full.append_text(self._source[self._taken : self._end])
            self._taken = self._end

    @Slot()
    def show_all(self) -> None:
        if self.full is not None:
            return
        if self.table:
            first = self._source.find("\n", self._start, self._end)
            second = self._source.find("\n", first + 1, self._end)
            view = QTableView()
            view.setAccessibleName("The whole table")
            view.setModel(TableModel(self._source[self._start : first], []))
            view.verticalHeader().setDefaultSectionSize(view.fontMetrics().height() + 8)
            view.horizontalHeader().setStretchLastSection(True)
            view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            view.setFixedHeight(VIEW_LINES * (view.fontMetrics().height() + 8))
            self.full = view
            self._taken = second + 1 if second >= 0 else self._end
        else:
            self.full = TextView(wrap=True, max_lines=VIEW_LINES)
            self.full.setAccessibleName("The whole block")
            self._taken = self._start
        self._take()
        self.head.hide()
        self._layout.insertWidget(1, self.full)
        if isinstance(self.full, QTableView):
            self._size_columns(self.full)
        self._update_note()

    @staticmethod
    def _size_columns(view: QTableView) -> None:
        """Columns as wide as their header and first rows (Qt's own sizing reads every row)."""
        model = view.model()
        assert isinstance(model, TableModel)
        metrics = view.fontMetrics()
        for column in range(model.columnCount()):
            texts = [model.header[column]] + [
                str(model.index(row, column).data()) for row in range(min(50, model.rowCount()))
            ]
            width = max(metrics.horizontalAdvance(t) for t in texts) + 24
            view.setColumnWidth(column, min(width, 400))

    def plain_text(self) -> str:
        if isinstance(self.full, TextView):
            return self.full.toPlainText()
        return self.head.toPlainText()

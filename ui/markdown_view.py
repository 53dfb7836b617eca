"""Markdown on screen as a column of pieces: prose documents, code blocks, and cut big blocks.

The pieces follow ``app.markdown_blocks``: each finished block is rendered once, so while a reply
streams only its last block changes (an update costs the new text, not the reply). A block too
big to show at once shows its start and a "Show all" button, which reveals the rest in a view
that lays out only what is scrolled into sight; code is coloured only up to a size.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
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
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QFont,
    QFontDatabase,
    QGuiApplication,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextOption,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTableView,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.markdown_blocks import (
    CODE_CHARS,
    CODE_LINE_CHARS,
    CODE_LINES,
    HEAD_CHARS,
    HEAD_COST,
    HEAD_LINES,
    HIGHLIGHT_CHARS,
    LONG_CHARS,
    LONG_LINES,
    TABLE_LINES,
    VIEW_LINE_CHARS,
    Block,
    BlockScanner,
    Kind,
    head_end,
    is_table,
    render_cost,
    safe_cut,
    table_cells,
)
from app.markdown_render import (
    COPY_SCHEME,
    MarkdownRenderer,
    Span,
    extends_paragraph,
    plain_to_html,
)

# While a reply streams, finished prose is frozen in pieces of about this many characters, so an
# update renders only the rest (the cost of an update follows the size of what is rendered again).
CHUNK = 800
MERGE_LIMIT = 12_000  # a finished reply up to this long is shown as one document again
# What is rendered per event-loop pass (``render_cost``, ~1 µs each); more waits for the next pass.
RENDER_BUDGET = 24_000
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


class CodeHighlighter(QSyntaxHighlighter):
    """Colours computed once for the whole block (Pygments), applied line by line."""

    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)
        self.spans: list[list[Span]] = []
        self._formats: dict[tuple[str, bool, bool], QTextCharFormat] = {}

    def highlightBlock(self, text: str) -> None:
        number = self.currentBlock().blockNumber()
        if number >= len(self.spans):
            return
        for span in self.spans[number]:
            key = (span.color, span.bold, span.italic)
            fmt = self._formats.get(key)
            if fmt is None:
                fmt = QTextCharFormat()
                if span.color:
                    fmt.setForeground(QColor(span.color))
                if span.bold:
                    fmt.setFontWeight(QFont.Weight.Bold)
                fmt.setFontItalic(span.italic)
                self._formats[key] = fmt
            self.setFormat(span.start, span.length, fmt)


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


class CodeBlock(QFrame):
    """A code block: its language, Copy (the code itself, not its rendering), its lines
    scrolling sideways when long; its first lines only when big, with "Show all"."""

    def __init__(self, renderer: MarkdownRenderer, lang: str, fenced: bool = True) -> None:
        super().__init__()
        self.setObjectName("codeBlock")
        self.renderer = renderer
        self.lang = lang
        self.setStyleSheet(
            f"QFrame#codeBlock {{ background: {renderer.code_bg}; border-radius: 6px; }}"
            f"QFrame#codeBlock QLabel, QFrame#codeBlock QToolButton {{ color: {renderer.muted}; }}"
        )
        self.label = QLabel(lang if fenced else "")
        self.label.setObjectName("codeLanguage")
        self.copy_button = QToolButton()
        self.copy_button.setText("Copy")
        self.copy_button.setToolTip("Copy the code")
        self.copy_button.setAutoRaise(True)
        self.copy_button.clicked.connect(self.copy_code)
        self.view = TextView(wrap=False, max_lines=1_000_000)
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.view.setStyleSheet(
            f"QPlainTextEdit {{ background: {renderer.code_bg}; color: {renderer.code_fg};"
            " border: none; padding: 0; }"
        )
        self.view.setTabStopDistance(4 * self.view.fontMetrics().horizontalAdvance(" "))
        self.view.setAccessibleName(f"{lang} code" if lang else "Code")
        self.highlighter: CodeHighlighter | None = None  # made when the code is coloured
        self.more = QPushButton()
        self.more.clicked.connect(self.show_all)
        self.more.hide()
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self.label)
        header.addStretch(1)
        header.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 4, 6, 6)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addWidget(self.view)
        layout.addWidget(self.more, 0, Qt.AlignmentFlag.AlignLeft)
        self._source = ""  # the text the code is part of, and where it is in it
        self._start = self._end = 0
        self._taken = 0  # how much of the code the view has taken (shown, or cut)
        self._lines = 1
        self._shown_lines = 0
        self._cut = False
        self._expanded = False
        self.closed = False
        self._colored = False

    def code(self) -> str:
        return self._source[self._start : self._end]

    def set_code(self, source: str, start: int, end: int, closed: bool) -> None:
        """The code is ``source[start:end]``, complete lines; while it streams each call adds
        lines to the end of the last call's."""
        if start != self._start or end < self._end:
            self._restart(start)
        self._lines += source.count("\n", max(self._end, start), end)
        self._source, self._end = source, end
        if self._expanded:
            self._take(end)
        else:
            budget = CODE_CHARS - (self._taken - start)
            # After the first piece, each piece starts with the line break before its first line.
            lines = CODE_LINES - self._shown_lines + (self._taken > start)
            upto = head_end(source, self._taken, end, lines, budget)
            if upto > self._taken and source[upto - 1] == "\n":
                upto -= 1  # the next line comes with its line break
            self._take(upto)
            self._cut = self._cut or self._taken < end
        self.closed = closed
        self._update_more()

    def _drop_colors(self) -> None:
        if self.highlighter is not None:
            self.highlighter.setDocument(None)
            self.highlighter.deleteLater()
            self.highlighter = None

    def _restart(self, start: int) -> None:
        self._drop_colors()
        self.view.restart()
        self._start = self._end = self._taken = start
        self._lines, self._shown_lines, self._cut, self._colored = 1, 0, False, False

    def _take(self, upto: int) -> None:
        if upto <= self._taken:
            return
        piece = self._source[self._taken : upto]
        self._taken = upto
        if not self._expanded:
            lines = piece.split("\n")
            for i, line in enumerate(lines):
                if len(line) > CODE_LINE_CHARS:
                    lines[i] = line[: safe_cut(line, CODE_LINE_CHARS)] + " …"
                    self._cut = True
            piece = "\n".join(lines)
            self._shown_lines += len(lines) - 1 + (self._shown_lines == 0)
        self.view.append_text(piece)

    def color(self) -> None:
        """Colours, once the block is complete and if what is shown is of a reasonable size."""
        if self._colored or not self.closed:
            return
        self._colored = True
        shown = self.view.toPlainText()
        if len(shown) <= HIGHLIGHT_CHARS and not self.view.broken:
            # Attached only now: attached, it is called back for every line as lines arrive.
            self.highlighter = CodeHighlighter(self.view.document())
            self.highlighter.spans = self.renderer.code_spans(shown, self.lang)
            self.highlighter.rehighlight()

    def _update_more(self) -> None:
        cut = self._cut and not self._expanded
        if cut:
            text = f"Show all {self._lines:,} lines" if self._lines > 1 else "Show all"
            if self.more.text() != text:
                self.more.setText(text)
        self.more.setVisible(cut)

    @Slot()
    def show_all(self) -> None:
        """The whole code, in a box that scrolls inside and lays out only what is in sight."""
        self._expanded = True
        self.view.restart()
        self.view.set_max_lines(VIEW_LINES)
        self._taken = self._start
        self._colored = False
        self._drop_colors()
        self._take(self._end)
        self._update_more()
        self.color()

    @Slot()
    def copy_code(self) -> None:
        copy_with_feedback(self.code(), self.copy_button)

    def plain_text(self) -> str:
        return self.view.toPlainText()


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
            view.setModel(TableModel(self._source[self._start : first], []))
            view.verticalHeader().setDefaultSectionSize(view.fontMetrics().height() + 8)
            view.horizontalHeader().setStretchLastSection(True)
            view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            view.setFixedHeight(VIEW_LINES * (view.fontMetrics().height() + 8))
            self.full = view
            self._taken = second + 1 if second >= 0 else self._end
        else:
            self.full = TextView(wrap=True, max_lines=VIEW_LINES)
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


Piece = MessageText | CodeBlock | LongBlock


class MarkdownView(QWidget):
    """Markdown as a column of pieces; ``text`` is the last prose piece (the one a streaming
    reply grows), ``frozen`` the pieces above it, which no longer change."""

    def __init__(self, renderer: MarkdownRenderer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.renderer = renderer
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        self.text = MessageText()
        self._layout.addWidget(self.text)
        self.frozen: list[Piece] = []
        self._live: CodeBlock | LongBlock | None = None  # the open block, when not prose
        self._live_block: Block | None = None
        self._scanner = BlockScanner()
        self._taken = 0  # blocks of the scanner's done list made into pieces
        self._group = -1  # where prose not yet in a frozen piece starts (-1: none)
        self._group_end = 0
        self._group_cost = 0
        self._tail: tuple[int, str] = (0, "")  # what ``text`` shows: its start and source
        self._shown: tuple[str, bool] | None = None
        self._later: list[tuple[int, Callable[[], None]]] = []
        self._budget = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._render_later)

    def clear(self) -> None:
        for piece in [*self.frozen, *([self._live] if self._live else [])]:
            piece.hide()  # at once, not when the deferred deletion runs
            piece.deleteLater()
        self.frozen = []
        self._live = self._live_block = None
        self._scanner = BlockScanner()
        self._taken = 0
        self._group = -1
        self._tail = (0, "")
        self._shown = None
        self._later = []
        self.text.clear()

    def show_html(self, html: str) -> None:
        """A note instead of Markdown (a placeholder, "no model card")."""
        self.clear()
        self.text.setHtml(html)
        self.text.show()

    def set_plain(self, text: str) -> None:
        """Text shown as typed (a user's message); its start only, with "Show all", when big."""
        if self._shown == (text, False):
            return
        lines = text.count("\n", 0, LONG_CHARS + 1)
        if len(text) <= LONG_CHARS and lines <= LONG_LINES:
            self.show_html(plain_to_html(text))
        else:
            self.clear()
            self.text.hide()
            piece = LongBlock(self.renderer, table=False, plain=True)
            self._layout.insertWidget(self._layout.indexOf(self.text), piece)
            self.frozen.append(piece)
            piece.set_source(text, 0, len(text))
            piece.render_head()
        self._shown = (text, False)

    def set_markdown(self, content: str, streaming: bool = False) -> None:
        if self._shown == (content, streaming):
            return
        final = not streaming
        scanner = self._scanner
        if (
            scanner.final
            or not content.startswith(scanner.text)
            or (final and (len(content) <= MERGE_LIMIT))
        ):
            self.clear()  # a short reply is shown anew when it ends: one document again
        self._shown = (content, streaming)
        self._budget = RENDER_BUDGET
        self._scanner.feed(content, final)
        done = self._scanner.done
        limit = CHUNK if streaming else MERGE_LIMIT
        for block in done[self._taken :]:
            self._take(block, limit)
        self._taken = len(done)
        self._show_tail(self._scanner.open_block(), streaming)

    def _take(self, block: Block, limit: int) -> None:
        if block.kind is Kind.PROSE:
            if self._group < 0:
                self._group = block.start
                self._group_cost = 0
            self._group_end = block.end
            self._group_cost += render_cost(self._scanner.text, block.start, block.end)
            # Dense markup makes a piece as costly as a long one: one piece per pass at most.
            if self._group_end - self._group >= limit or self._group_cost >= RENDER_BUDGET:
                self._freeze_group()
            return
        self._freeze_group()
        live, self._live = self._live, None
        if live is not None and self._same(self._live_block, block):
            self._update(live, block)
        else:
            if live is not None:
                live.deleteLater()
            live = self._make(block)
        self.frozen.append(live)

    @staticmethod
    def _same(a: Block | None, b: Block) -> bool:
        return a is not None and a.start == b.start and a.kind is b.kind and a.fenced == b.fenced

    def _make(self, block: Block) -> CodeBlock | LongBlock:
        piece: CodeBlock | LongBlock
        if block.kind is Kind.CODE:
            piece = CodeBlock(self.renderer, block.lang, block.fenced)
        else:
            piece = LongBlock(self.renderer, is_table(self._scanner.text, block.start))
        self._layout.insertWidget(self._layout.indexOf(self.text), piece)
        self._update(piece, block)
        if isinstance(piece, LongBlock):
            self._spend(piece.head_cost(), piece.render_head)
        return piece

    def _update(self, piece: CodeBlock | LongBlock, block: Block) -> None:
        text = self._scanner.text
        if isinstance(piece, CodeBlock):
            piece.set_code(text, block.body_start, block.body_end, block.closed)
            if block.closed:  # coloured on the next pass: the code shows a frame sooner
                self._spend(2 * piece.view.document().characterCount(), piece.color, now=False)
        else:
            piece.set_source(text, block.start, block.end)

    def _freeze_group(self) -> None:
        if self._group < 0:
            return
        source = self._scanner.text[self._group : self._group_end]
        self._group = -1
        if not source.strip():
            return
        piece = MessageText()
        self._layout.insertWidget(self._layout.indexOf(self.text), piece)
        self.frozen.append(piece)
        cost = render_cost(source, 0, len(source))
        self._spend(cost, lambda: piece.setHtml(self.renderer.render(source)))

    def _show_tail(self, block: Block | None, streaming: bool) -> None:
        if block is not None and block.kind is not Kind.PROSE:
            self._freeze_group()
            self._set_text(len(self._scanner.text), "", streaming)
            if self._live is not None and self._same(self._live_block, block):
                self._update(self._live, block)
            else:
                if self._live is not None:
                    self._live.hide()
                    self._live.deleteLater()
                self._live = self._make(block)
            self._live_block = block
            return
        if self._live is not None:  # what it showed was taken back (cannot happen in a stream)
            self._live.hide()
            self._live.deleteLater()
            self._live = self._live_block = None
        start = self._group if self._group >= 0 else (block.start if block else 0)
        end = block.end if block else (self._group_end if self._group >= 0 else 0)
        self._set_text(start, self._scanner.text[start:end], streaming)

    def _set_text(self, start: int, source: str, streaming: bool) -> None:
        previous_start, previous = self._tail
        self._tail = (start, source)
        if not source.strip():
            if previous.strip() or not self.text.isHidden():
                self.text.clear()
                self.text.hide()
            return
        self.text.show()
        if (
            streaming
            and previous_start == start
            and source.startswith(previous)
            and extends_paragraph(previous, source[len(previous) :])
        ):
            # Words that only lengthen the last paragraph: appended, not rendered again (an
            # update then costs what Qt's layout and painting of the new words cost).
            cursor = QTextCursor(self.text.document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(source[len(previous) :], cursor.blockCharFormat())
            return
        self.text.setHtml(self.renderer.render(source))

    def _spend(self, cost: int, render: Callable[[], None], now: bool = True) -> None:
        """Render now if this pass's budget allows, else on a later pass (a big reply shown at
        once appears over a few frames instead of stalling the window)."""
        if now and not self._later and (self._budget >= cost or self._budget == RENDER_BUDGET):
            self._budget -= cost
            render()
        else:
            self._later.append((cost, render))
            self._timer.start()

    @Slot()
    def _render_later(self) -> None:
        budget = RENDER_BUDGET
        done = 0
        for cost, render in self._later:
            if done and cost > budget:
                break
            render()
            budget -= cost
            done += 1
        del self._later[:done]
        if self._later:
            self._timer.start()

    def rendering(self) -> bool:
        """Whether pieces are still waiting to be rendered."""
        return bool(self._later)

    def pieces(self) -> list[Piece]:
        """What is shown, top to bottom."""
        shown: list[Piece] = [*self.frozen]
        if self._live is not None:
            shown.append(self._live)
        if not self.text.isHidden():
            shown.append(self.text)
        return shown

    def plain_text(self) -> str:
        parts = []
        for piece in self.pieces():
            if isinstance(piece, MessageText):
                parts.append(piece.toPlainText())
            else:
                parts.append(piece.plain_text())
        return "\n".join(parts)


class MarkdownArea(QScrollArea):
    """A Markdown document that scrolls (a model card), rendered as the chat renders replies."""

    def __init__(self, renderer: MarkdownRenderer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view = MarkdownView(renderer)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.view)
        layout.addStretch(1)
        self.setWidget(body)

    def set_renderer(self, renderer: MarkdownRenderer) -> None:
        self.view.renderer = renderer

    def set_markdown(self, text: str) -> None:
        self.view.clear()
        self.view.set_markdown(text)
        self.verticalScrollBar().setValue(0)

    def show_html(self, html: str) -> None:
        self.view.show_html(html)

    def toPlainText(self) -> str:
        return self.view.plain_text()

"""A code block on screen: its language, Copy, its lines scrolling sideways when long, coloured
once complete and of a reasonable size, its first lines only when big, with "Show all"."""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextDocument,
)
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout

from app.markdown_blocks import (
    CODE_CHARS,
    CODE_LINE_CHARS,
    CODE_LINES,
    HIGHLIGHT_CHARS,
    head_end,
    safe_cut,
)
from app.markdown_render import MarkdownRenderer, Span
from ui.markdown_pieces import VIEW_LINES, TextView, copy_with_feedback


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

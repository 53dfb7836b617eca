"""Markdown on screen as a column of pieces: prose documents, code blocks, and cut big blocks.

The pieces follow ``app.markdown_blocks``: each finished block is rendered once, so while a reply
streams only its last block changes (an update costs the new text, not the reply). A block too
big to show at once shows its start and a "Show all" button, which reveals the rest in a view
that lays out only what is scrolled into sight; code is coloured only up to a size.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QScrollArea, QVBoxLayout, QWidget

from app.markdown_blocks import (
    LONG_CHARS,
    LONG_LINES,
    Block,
    BlockScanner,
    Kind,
    is_table,
    render_cost,
)
from app.markdown_render import MarkdownRenderer, extends_paragraph, plain_to_html
from ui.code_block import CodeBlock
from ui.markdown_pieces import LongBlock, MessageText

# While a reply streams, finished prose is frozen in pieces of about this many characters, so an
# update renders only the rest (the cost of an update follows the size of what is rendered again).
CHUNK = 800
MERGE_LIMIT = 12_000  # a finished reply up to this long is shown as one document again
# What is rendered per event-loop pass (``render_cost``, ~1 µs each); more waits for the next pass.
RENDER_BUDGET = 24_000
COLOR_NOW = 4_000  # code up to this cost is coloured as it is shown, bigger code a pass later

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
        self._expanded: set[int] = set()  # where the blocks revealed with "Show all" start
        self._later: list[tuple[int, Callable[[], None]]] = []
        self._budget = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._render_later)

    def clear(self, keep_expanded: bool = False) -> None:
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
        if not keep_expanded:
            self._expanded = set()
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
        if scanner.final or not content.startswith(scanner.text):
            self.clear()
        elif final and len(content) <= MERGE_LIMIT:
            self.clear(keep_expanded=True)  # a short reply is shown anew when it ends: one
            # document again, with what was revealed still revealed
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
                live.hide()
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
        if block.start in self._expanded:
            piece.show_all()
        elif isinstance(piece, LongBlock):
            self._spend(piece.head_cost(), piece.render_head)
        piece.more.clicked.connect(lambda _=False, at=block.start: self._expanded.add(at))
        return piece

    def _update(self, piece: CodeBlock | LongBlock, block: Block) -> None:
        text = self._scanner.text
        if isinstance(piece, CodeBlock):
            piece.set_code(text, block.body_start, block.body_end, block.closed)
            if block.closed:  # big code is coloured on the next pass: it shows a frame sooner
                cost = 2 * piece.view.document().characterCount()
                self._spend(cost, piece.color, now=cost <= COLOR_NOW)
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

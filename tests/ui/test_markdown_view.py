"""Markdown on screen: code blocks with their language and Copy, big blocks cut with "Show all"
that reveals the rest, tables in a view of their own, links only on click, nothing fetched."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QTableView
from pytestqt.qtbot import QtBot

from app.markdown_blocks import CODE_LINES, TABLE_LINES
from app.markdown_render import MarkdownRenderer, card_markdown
from ui.code_block import CodeBlock
from ui.markdown_pieces import LongBlock, TextView
from ui.markdown_view import MarkdownArea, MarkdownView


def shown(qtbot: QtBot, text: str, streaming: bool = False) -> MarkdownView:
    view = MarkdownView(MarkdownRenderer())
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.set_markdown(text, streaming)
    qtbot.waitUntil(lambda: not view.rendering())
    return view


def only(view: MarkdownView, kind: type) -> list:
    return [p for p in view.pieces() if isinstance(p, kind)]


def fence(lines: int, lang: str = "python") -> tuple[str, str]:
    code = "\n".join(f"value_{i} = compute({i})" for i in range(lines))
    return code, f"Here:\n\n```{lang}\n{code}\n```\n\nDone."


def test_a_code_block_has_its_language_and_copy_puts_the_code_on_the_clipboard(
    qtbot: QtBot,
) -> None:
    code, text = fence(5)
    view = shown(qtbot, text)
    [block] = only(view, CodeBlock)
    assert block.label.text() == "python"
    assert block.plain_text() == code
    assert block.more.isHidden()  # small: shown whole, no "Show all"
    block.copy_button.click()
    assert QGuiApplication.clipboard().text() == code  # the code, not its rendering
    assert block.copy_button.text() == "Copied ✓"
    assert "Here:" in view.plain_text()
    assert "Done." in view.plain_text()


def test_a_finished_code_block_is_coloured(qtbot: QtBot) -> None:
    view = shown(qtbot, "```python\ndef f():\n    return 1\n```")
    [block] = only(view, CodeBlock)
    first_line = block.view.document().firstBlock()
    formats = first_line.layout().formats()
    assert any(f.start == 0 and f.length == 3 for f in formats)  # "def"


def test_a_long_code_line_scrolls_sideways_instead_of_being_cut_off(qtbot: QtBot) -> None:
    code = "x = [" + ", ".join(str(i) for i in range(150)) + "]"  # 700 characters
    view = shown(qtbot, f"```python\n{code}\n```")
    view.show()
    [block] = only(view, CodeBlock)
    qtbot.waitUntil(lambda: block.view.horizontalScrollBar().maximum() > 0)
    assert block.plain_text() == code  # all of it is there, reachable by scrolling


def test_a_huge_code_block_shows_its_start_and_show_all_reveals_the_rest(qtbot: QtBot) -> None:
    code, text = fence(30_000)  # ~700 KB
    view = shown(qtbot, text)
    [block] = only(view, CodeBlock)
    assert block.view.document().blockCount() == CODE_LINES
    assert not block.more.isHidden()
    assert block.more.text() == "Show all 30,000 lines"
    block.more.click()
    assert block.view.document().blockCount() == 30_000
    assert block.plain_text() == code
    assert block.more.isHidden()
    assert block.view.height() < 1_000  # it scrolls inside instead of making the chat huge
    block.copy_button.click()
    assert QGuiApplication.clipboard().text() == code


def test_a_megabyte_line_is_shown_and_show_all_reveals_all_of_it(qtbot: QtBot) -> None:
    line = "0123456789" * 100_000
    view = shown(qtbot, "A line: " + line)
    [block] = only(view, LongBlock)
    assert block.head.toPlainText().startswith("A line: 0123456789")
    assert "of 1,000,008 characters" in block.note.text()
    block.more.click()
    assert isinstance(block.full, TextView)
    assert block.full.toPlainText().replace("\n", "") == "A line: " + line
    assert block.head.isHidden()


def test_a_huge_table_shows_its_first_rows_and_show_all_opens_all_rows(qtbot: QtBot) -> None:
    rows = "".join(f"| {i} | Yellow | {i * 0.5} |\n" for i in range(50_000))
    view = shown(qtbot, "| n | colour | price |\n|---|---|--:|\n" + rows + "\nAfter the table.")
    [block] = only(view, LongBlock)
    assert block.table
    head = block.head.document()
    assert head.toPlainText().count("Yellow") == TABLE_LINES - 2
    assert block.more.text() == "Show all 50,000 rows"
    assert block.note.text() == f"Showing {TABLE_LINES - 2} of 50,000 rows."
    assert "After the table." in view.text.toPlainText()
    block.more.click()
    table = block.full
    assert isinstance(table, QTableView)
    model = table.model()
    assert model.rowCount() == 50_000
    assert model.columnCount() == 3
    assert model.headerData(1, Qt.Orientation.Horizontal, Qt.ItemDataRole.DisplayRole) == "colour"
    assert model.index(49_999, 2).data() == "24999.5"


def test_code_sent_without_fences_keeps_its_lines_and_indentation(qtbot: QtBot) -> None:
    code = "def is_prime(n):\n    if n < 2:\n        return False\n    return True"
    view = shown(qtbot, code + "\n```")
    [block] = only(view, CodeBlock)
    assert block.plain_text() == code
    assert not only(view, LongBlock)
    assert view.text.isHidden()  # no empty block for the stray fence


def test_a_poem_keeps_its_lines(qtbot: QtBot) -> None:
    view = shown(qtbot, "Roses are red,\nViolets are blue,\nSugar is sweet.")
    lines = view.text.toPlainText().replace("\u2028", "\n").split("\n")
    assert lines == ["Roses are red,", "Violets are blue,", "Sugar is sweet."]


@pytest.mark.parametrize(
    "paragraph",
    ["مرحبا! كيف يمكنني مساعدتك اليوم؟", "שלום! איך אפשר לעזור?"],
)
def test_right_to_left_paragraphs_are_laid_out_right_to_left(qtbot: QtBot, paragraph: str) -> None:
    view = shown(qtbot, f"{paragraph}\n\nEnglish after.")
    document = view.text.document()
    assert document.firstBlock().textDirection() == Qt.LayoutDirection.RightToLeft
    assert document.lastBlock().textDirection() == Qt.LayoutDirection.LeftToRight


def test_cjk_and_emoji_come_through_whole(qtbot: QtBot) -> None:
    text = "中文：你好，世界！日本語：こんにちは。한국어 👍🏽 👨\u200d👩\u200d👧"
    view = shown(qtbot, text)
    assert view.text.toPlainText() == text


def test_links_open_in_the_browser_only_when_clicked(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()))
    view = shown(qtbot, "[site](https://example.org) and [bad](javascript:alert(1))")
    assert opened == []  # showing a link opens nothing
    view.text.anchorClicked.emit(QUrl("https://example.org"))
    view.text.anchorClicked.emit(QUrl("file:///etc/passwd"))
    assert opened == ["https://example.org"]


def test_the_copy_link_of_code_in_a_list_copies_that_code(qtbot: QtBot) -> None:
    view = shown(qtbot, "1. Install:\n   ```bash\n   pip install hearth\n   ```\n2. Run it.")
    html = view.text.toHtml()
    start = html.index('href="hearth-copy:') + len('href="')
    view.text.anchorClicked.emit(QUrl(html[start : html.index('"', start)]))
    assert QGuiApplication.clipboard().text() == "pip install hearth"
    assert "Copied ✓" in view.text.toPlainText()
    qtbot.waitUntil(lambda: "Copied" not in view.text.toPlainText(), timeout=3000)


class CountingServer:
    def __init__(self) -> None:
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass  # quiet

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def server() -> Iterator[CountingServer]:
    s = CountingServer()
    yield s
    s.server.shutdown()
    s.server.server_close()
    s.thread.join()


def test_remote_images_in_a_reply_or_a_card_make_no_request(
    qtbot: QtBot, server: CountingServer
) -> None:
    import urllib.request

    with pytest.raises(urllib.error.HTTPError):  # the server counts what reaches it
        urllib.request.urlopen(f"{server.url}/probe.png", timeout=5)
    assert server.hits == 1
    hostile = (
        f'![cat]({server.url}/md.png) <img src="{server.url}/html.png">\n\n'
        f"| a |\n|---|\n| ![x]({server.url}/cell.png) |\n\n"
        f"<link rel=stylesheet href=\"{server.url}/s.css\"><style>@import '{server.url}/i.css'"
        "</style>"
    )
    view = shown(qtbot, hostile)
    view.show()
    card = MarkdownArea(MarkdownRenderer())
    qtbot.addWidget(card)
    card.set_markdown(
        card_markdown(f'# Card\n\n<img src="{server.url}/card.png" alt="diagram">\n\n{hostile}')
    )
    card.show()
    qtbot.wait(300)  # any request would have been made by now
    assert server.hits == 1
    assert "[image: cat]" in view.plain_text()
    assert "[image: diagram]" in card.toPlainText()


def test_a_model_card_with_a_megabyte_line_shows_its_start(qtbot: QtBot) -> None:
    card = MarkdownArea(MarkdownRenderer())
    qtbot.addWidget(card)
    card.set_markdown("# Card\n\n" + "y" * 1_000_000 + "\n\n## License\n\nApache-2.0")
    text = card.toPlainText()
    assert text.startswith("Card\nyyyy")
    assert "Apache-2.0" in text
    assert len(text) < 10_000  # the rest waits behind "Show all"


def test_what_was_revealed_stays_revealed_when_the_reply_ends(qtbot: QtBot) -> None:
    code = "\n".join(f"x{i} = {i}" for i in range(CODE_LINES + 50))
    reply = f"Numbers:\n\n```python\n{code}\n```\n\nThat is all."
    view = MarkdownView(MarkdownRenderer())
    qtbot.addWidget(view)
    view.set_markdown(reply[: reply.index("That")], streaming=True)
    [block] = only(view, CodeBlock)
    block.more.click()  # while it streams
    view.set_markdown(reply)  # it ends: shown anew as one document, the code still whole
    qtbot.waitUntil(lambda: not view.rendering())
    [block] = only(view, CodeBlock)
    assert block.plain_text() == code
    assert block.more.isHidden()

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.markdown_render import MarkdownRenderer, extends_paragraph, plain_to_html


def test_markdown_basics_and_code() -> None:
    html = MarkdownRenderer().render(
        "# Title\n\n- **bold** item\n\n```python\ndef f():\n    return 1\n```"
    )
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html
    assert "style=" in html
    assert "def" in html
    assert "python" in html


def test_raw_html_is_escaped_and_images_not_loaded() -> None:
    html = MarkdownRenderer().render('<img src="http://evil/x.png"> ![cat](http://evil/cat.png)')
    assert "<img" not in html
    assert "&lt;img" in html
    assert '<a href="http://evil/cat.png">[image: cat]</a>' in html


def test_unknown_language_is_plain() -> None:
    html = MarkdownRenderer(dark=True).render("```nosuchlang\nx = 1\n```")
    assert "x = 1" in html


def test_plain_user_text() -> None:
    assert plain_to_html("a < b\nc") == "<p>a &lt; b<br>c</p>"


@pytest.mark.parametrize(
    ("source", "added"),
    [
        ("Lighthouses guide ships", " at night."),
        ("A keeper's work was", ' hard, and "lonely" - 10% of 3.5 days/week: $5+x=y.'),
        ("- an item that goes", " on"),
        ("1. First, then", " more"),
        ("> - quoted item", " goes on"),
        ("- item\nlazy continuation", " goes on"),
        ("```\ncode\n```\nAfter the code", " words"),
        ("Some **bold** then", " words"),
        ("Über", "größe"),
    ],
)
def test_words_that_only_lengthen_the_last_paragraph(source: str, added: str) -> None:
    assert extends_paragraph(source, added)


@pytest.mark.parametrize(
    ("source", "added"),
    [
        ("Hello", " world\nNext line"),  # a line break
        ("Hello", " wide  gap"),  # two spaces show as one when rendered
        ("Hello", " world "),  # a final space is trimmed when rendered
        ("Hello ", "world"),
        ("Hello", " *world"),  # markup in what is added
        ("Hello", " [link"),
        ("Hello", " `code"),
        ("1", ". Item"),  # a line that does not start with a letter
        ("# Title", " more"),
        ("> - - -", " more"),  # a thematic break, not words
        ("    indented code", " more"),
        ("```\ncode", " more"),  # inside a code fence
        ("| a | b |\n|---|---|\nbar", " baz"),  # a table row without pipes
        ("Tom &amp", ";"),  # an entity the addition would complete
        ("escaped \\", ","),
        ("[foo]: /url 'title\ngoes", " on"),  # a link definition's title
        ("Some **bold**", " words"),  # the next character decides what the delimiters pair with
        ("", "words"),
    ],
)
def test_anything_markdown_could_read_differently_is_rendered_again(
    source: str, added: str
) -> None:
    assert not extends_paragraph(source, added)


def test_warm_up_imports_what_rendering_needs() -> None:
    code = (
        "import sys\n"
        "from app.markdown_render import warm_up\n"
        "needed = {'markdown_it', 'pygments.lexers', 'pygments.formatters.html'}\n"
        "assert not needed & set(sys.modules)\n"
        "warm_up()\n"
        "assert needed <= set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])

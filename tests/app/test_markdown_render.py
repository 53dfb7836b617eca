from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.markdown_render import COPY_SCHEME, MarkdownRenderer, extends_paragraph, plain_to_html


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


def test_single_line_breaks_are_kept() -> None:
    html = MarkdownRenderer().render("Roses are red,\nViolets are blue.\n\nNew stanza")
    assert re.search(r"Roses are red,<br\s*/?>\s*Violets are blue.", html)
    assert html.count("<p>") == 2


def test_tables_have_borders_padding_and_alignment() -> None:
    html = MarkdownRenderer().render("| Colour | Price |\n|:--|--:|\n| Yellow | 4.26 |")
    assert re.search(r'<table border="1" cellspacing="0" cellpadding="6"', html)
    assert '<td align="right">4.26</td>' in html
    assert re.search(r"<th [^>]*bgcolor=", html)  # the header row stands out


def test_code_inside_a_list_is_labelled_wrapped_and_copyable() -> None:
    code = "pip install x" + " --flag" * 40
    html = MarkdownRenderer().render(f"1. Install:\n   ```bash\n   {code}\n   ```\n2. Run")
    assert ">bash</td>" in html
    assert "white-space:pre-wrap" in html  # long lines wrap instead of running off the edge
    link = re.search(rf'href="{COPY_SCHEME}:([^"]+)"', html)
    assert link is not None
    assert base64.urlsafe_b64decode(link.group(1)).decode() == code  # the code, not its HTML


def test_big_code_inside_a_list_shows_its_start() -> None:
    code = "".join(f"x{i} = {i}\n" for i in range(5000))
    indented = "".join("   " + line + "\n" for line in code.splitlines())
    html = MarkdownRenderer().render(f"1. Data:\n   ```python\n{indented}   ```")
    assert "\nx99 " in html
    assert "\nx100 " not in html
    assert "5,000 lines in all" in html


@pytest.mark.parametrize(
    "hostile",
    [
        "[click](javascript:alert(1))",
        "<javascript:alert(1)>",
        "[file](file:///etc/passwd)",
        "<a href='javascript:alert(1)'>x</a>",
    ],
)
def test_dangerous_links_are_not_links(hostile: str) -> None:
    html = MarkdownRenderer().render(hostile)
    assert not re.search(r'href="(javascript|file):', html, re.IGNORECASE)


def test_raw_html_and_scripts_are_shown_as_text() -> None:
    html = MarkdownRenderer().render("<script>alert(1)</script> <iframe src='http://x'></iframe>")
    assert "<script" not in html
    assert "<iframe" not in html
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize(
    "nested",
    [
        "> " * 30 + "the innermost words",
        "".join("  " * d + f"- level {d}\n" for d in range(21)) + " " * 42 + "the innermost words",
        "> " * 300 + "the innermost words",  # deeper than the parser goes: shown as written
    ],
)
def test_deep_nesting_loses_nothing(nested: str) -> None:
    assert "the innermost words" in MarkdownRenderer().render(nested)


def test_code_colours_fall_on_the_right_words() -> None:
    code = "def f(x):\n    return 1"
    spans = MarkdownRenderer().code_spans(code, "python")
    lines = code.split("\n")
    coloured = [
        [line[s.start : s.start + s.length] for s in spans[i] if s.color]
        for i, line in enumerate(lines)
    ]
    assert "def" in coloured[0]
    assert "return" in coloured[1]
    assert "1" in coloured[1]


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
        "needed = {'markdown_it', 'pygments.lexers', 'pygments.formatters.html',\n"
        "          'pygments.styles.friendly', 'pygments.styles.monokai',\n"
        "          'pygments.lexers.python'}\n"
        "assert not needed & set(sys.modules)\n"
        "warm_up()\n"
        "assert needed <= set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])

from __future__ import annotations

from app.markdown_render import MarkdownRenderer, plain_to_html


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

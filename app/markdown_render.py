"""Model output as HTML for Qt's rich-text engine: Markdown with highlighted code.

Safe by construction: raw HTML in the text is escaped, and images become plain links, so showing
a reply never fetches anything.
"""

from __future__ import annotations

import html
import importlib
import re
from functools import lru_cache
from typing import Any


def _image_as_link(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    src = html.escape(token.attrGet("src") or "", quote=True)
    alt = html.escape(token.content or "image")
    return f'<a href="{src}">[image: {alt}]</a>'


def warm_up() -> None:
    """Import what rendering needs (markdown-it-py, Pygments: ~0.1 s), e.g. on a helper thread
    once the window is shown, so that the first reply's first words do not wait for it."""
    for name in ("markdown_it", "pygments.formatters.html", "pygments.lexers"):
        importlib.import_module(name)


class MarkdownRenderer:
    """markdown-it-py and Pygments are imported at the first render unless ``warm_up`` has
    imported them (~0.1 s the window's start does not wait for)."""

    def __init__(self, dark: bool = False) -> None:
        self.dark = dark
        self._code_bg = "#272822" if dark else "#f4f4f6"
        self._code_fg = "#f8f8f2" if dark else "#1f2328"
        self._md: Any = None
        self._formatter: Any = None

    def _parser(self) -> Any:
        if self._md is not None:
            return self._md
        from markdown_it import MarkdownIt

        md = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": False})
        md.enable(["table", "strikethrough"])
        md.add_render_rule("image", _image_as_link)

        # markdown-it binds rules with __get__, so the rule must be a plain function.
        def fence(_renderer: Any, tokens: Any, idx: int, _options: Any, _env: Any) -> str:
            token = tokens[idx]
            lang = (token.info or "").strip().split(" ")[0]
            return self.code_block(token.content, lang)

        md.add_render_rule("fence", fence)
        md.add_render_rule("code_block", fence)
        self._md = md
        return md

    def code_block(self, code: str, lang: str) -> str:
        from pygments import highlight

        if self._formatter is None:
            from pygments.formatters import HtmlFormatter

            style = "monokai" if self.dark else "friendly"
            self._formatter = HtmlFormatter(style=style, noclasses=True, nowrap=True)
        body = highlight(code, _lexer(lang), self._formatter).rstrip("\n")
        label = f'<div style="color:#888;font-size:small">{html.escape(lang)}</div>' if lang else ""
        # A one-cell table: Qt paints block backgrounds for table cells reliably, not for <pre>.
        return (
            f'<table width="100%" cellpadding="8" cellspacing="0" style="background-color:'
            f'{self._code_bg};margin:4px 0"><tr><td>{label}<pre style="color:{self._code_fg};'
            f'font-family:monospace;margin:0">{body}</pre></td></tr></table>'
        )

    def render(self, text: str) -> str:
        # Without the final line break, which Qt would read as a space ending the last paragraph.
        return str(self._parser().render(text)).rstrip("\n")


@lru_cache(maxsize=64)
def _lexer_by_name(lang: str) -> Any:
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        return get_lexer_by_name(lang)
    except ClassNotFound:
        return None


def _lexer(lang: str) -> Any:
    from pygments.lexers import TextLexer

    # No guessing for unlabelled code: guess_lexer is slow and often wrong on short snippets.
    return (_lexer_by_name(lang.lower()) if lang else None) or TextLexer()


def stable_prefix_end(text: str, minimum: int) -> int:
    """Where ``text`` can be cut so that the part before it is finished Markdown (0: nowhere).

    A cut goes at the start of an unindented line after a blank line, outside code fences, at or
    after ``minimum`` characters: the blocks before it no longer change as more text streams in.
    """
    cut = 0
    pos = 0
    in_fence = False
    previous_blank = False
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        if not in_fence and previous_blank and pos >= minimum and line[:1] not in (" ", "\t", "\n"):
            cut = pos
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        previous_blank = not stripped
        pos += len(line)
    return cut


# What text may add to a paragraph without Markdown reading any of it as markup (on one line).
_PLAIN_PUNCTUATION = frozenset(" ,.!?'\"-:;/%$=+’‘“”—–…")
# In the paragraph being added to, signs of markup whose meaning more text could change (tables,
# entities, escapes, links and their definitions) or that a plain text insertion would not follow.
_NOT_PLAIN_PARAGRAPH = frozenset("|&\\[]<")
# List item and block quote marks, which may come before a paragraph's first word on its line.
_CONTAINER_MARKS = re.compile(r"(?:(?:[-*+]|\d{1,9}[.)]) +|> ?)*")


def extends_paragraph(source: str, added: str) -> bool:
    """Whether Markdown ``source + added`` renders as ``source`` does with ``added`` appended as
    plain text to its last paragraph, so that a view streaming a reply may append it as it is.

    True when ``added`` is words and plain punctuation without a line break, a double space or a
    final space (all three show differently when rendered), and ``source`` ends in ordinary
    paragraph text: its last line starts with a letter (after any list item or block quote
    marks), outside a code fence; its last paragraph holds no table, entity, escape or link that
    ``added`` could complete; and it does not end in whitespace (trimmed when rendered) or an
    emphasis or code delimiter (the next character decides what that pairs with).
    """
    if not added or not source or "  " in added or added[-1].isspace():
        return False
    if source[-1].isspace() or source[-1] in "*_~`":
        return False
    if not all(c.isalnum() or c in _PLAIN_PUNCTUATION for c in added):
        return False
    line = source[source.rfind("\n") + 1 :]
    marks = _CONTAINER_MARKS.match(line)  # always matches, if only the empty string
    if marks is None or not line[marks.end() :][:1].isalpha():
        return False
    if not _NOT_PLAIN_PARAGRAPH.isdisjoint(source[source.rfind("\n\n") + 1 :]):
        return False
    in_fence = False
    if "```" in source or "~~~" in source:
        for row in source.splitlines():
            if row.lstrip().startswith(("```", "~~~")):
                in_fence = not in_fence
    return not in_fence


def plain_to_html(text: str) -> str:
    """User text shown as typed: escaped, line breaks kept."""
    return "<p>" + html.escape(text).replace("\n", "<br>") + "</p>"


_IMG_TAG = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"'][^>]*>", re.IGNORECASE)
_ALT = re.compile(r"\balt\s*=\s*[\"']([^\"']*)[\"']", re.IGNORECASE)
_TAG = re.compile(
    r"</?(?:a|b|br|center|code|details|div|em|font|h[1-6]|hr|i|li|ol|p|picture|pre|small|source"
    r"|span|strong|sub|summary|sup|table|tbody|td|th|thead|tr|u|ul)\b[^>]*>",
    re.IGNORECASE,
)


def card_markdown(text: str) -> str:
    """A model card's Markdown with its raw HTML reduced to text: ``<img>`` tags become links
    (so no image is fetched unless clicked) and other tags are dropped instead of shown escaped."""

    def image(m: re.Match[str]) -> str:
        alt = _ALT.search(m.group(0))
        label = (alt.group(1) if alt else "") or "image"
        return f"![{label}]({m.group(1)})"

    return _TAG.sub("", _IMG_TAG.sub(image, text))

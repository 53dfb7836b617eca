"""Model output as HTML for Qt's rich-text engine: Markdown with highlighted code.

Safe by construction: raw HTML in the text is escaped, and images become plain links, so showing
a reply never fetches anything. Big blocks are cut before they get here (``markdown_blocks``).
"""

from __future__ import annotations

import base64
import html
import importlib
import re
from functools import lru_cache
from typing import Any, NamedTuple

from app.markdown_blocks import CODE_CHARS, CODE_LINES, HIGHLIGHT_CHARS, head_end

COPY_SCHEME = "hearth-copy"  # a link that puts the code it carries on the clipboard
# How deep quotes and lists may nest (CommonMark's preset says 20, where a list nested 9 deep
# already lost its deeper items; 95 nested quotes render in ~35 ms).
NESTING = 100


def _image_as_link(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    src = html.escape(token.attrGet("src") or "", quote=True)
    alt = html.escape(token.content or "image")
    return f'<a href="{src}">[image: {alt}]</a>'


def warm_up() -> None:
    """Import what rendering needs (markdown-it-py, Pygments: ~0.1 s), e.g. on a helper thread
    once the window is shown, so that the first reply's first words do not wait for it."""
    for name in ("markdown_it", "pygments.formatters.html", "pygments.lexers", "pygments.styles"):
        importlib.import_module(name)
    from pygments.styles import get_style_by_name

    for style in ("friendly", "monokai"):  # code blocks' colours, light and dark
        get_style_by_name(style)
    _lexer("python")  # the language replies show most (its lexer module takes ~10 ms to import)


class MarkdownRenderer:
    """markdown-it-py and Pygments are imported at the first render unless ``warm_up`` has
    imported them (~0.1 s the window's start does not wait for)."""

    def __init__(self, dark: bool = False) -> None:
        self.dark = dark
        self.code_bg = "#272822" if dark else "#f4f4f6"
        self.code_fg = "#f8f8f2" if dark else "#1f2328"
        self.muted = "#9a9aa0" if dark else "#6e6e76"
        self._rule = "#55555c" if dark else "#c8c8ce"
        self._header_bg = "#333338" if dark else "#ececf0"
        self._md: Any = None
        self._formatter: Any = None

    def _parser(self) -> Any:
        if self._md is not None:
            return self._md
        from markdown_it import MarkdownIt

        # "breaks": a single line break in a reply is kept, as chat apps show it (a poem stays
        # a poem); Markdown proper would join the lines into one paragraph.
        options = {"html": False, "linkify": False, "breaks": True, "maxNesting": NESTING}
        md = MarkdownIt("commonmark", options)
        md.enable(["table", "strikethrough"])
        md.add_render_rule("image", _image_as_link)

        # markdown-it binds rules with __get__, so the rule must be a plain function.
        def fence(_renderer: Any, tokens: Any, idx: int, _options: Any, _env: Any) -> str:
            token = tokens[idx]
            lang = (token.info or "").strip().split(" ")[0]
            return self.code_block(token.content, lang)

        def table_open(_renderer: Any, _tokens: Any, _idx: int, _options: Any, _env: Any) -> str:
            # Qt's rich text draws cell borders only from the table's border attribute.
            return (
                # Not border-collapse: Qt then paints a table ~3 times slower.
                f'<table border="1" cellspacing="0" cellpadding="6" style="border-style:solid;'
                f'border-color:{self._rule};margin-top:6px;margin-bottom:6px">'
            )

        def cell_open(_renderer: Any, tokens: Any, idx: int, _options: Any, _env: Any) -> str:
            token = tokens[idx]
            tag = token.tag
            align = str(token.attrGet("style") or "").removeprefix("text-align:")
            attrs = f' align="{html.escape(align)}"' if align else ""
            if tag == "th":
                attrs += f' bgcolor="{self._header_bg}"'
            return f"<{tag}{attrs}>"

        md.add_render_rule("fence", fence)
        md.add_render_rule("code_block", fence)
        md.add_render_rule("table_open", table_open)
        md.add_render_rule("th_open", cell_open)
        md.add_render_rule("td_open", cell_open)
        self._md = md
        return md

    def code_block(self, code: str, lang: str) -> str:
        """Code inside prose (in a list item, a quote): coloured up to a size, its first lines
        only when long, wrapped rather than cut off at the edge, with a Copy link."""
        from pygments import highlight

        code = code.rstrip("\n")
        shown = code[: head_end(code, 0, len(code), CODE_LINES, CODE_CHARS)]
        if len(shown) <= HIGHLIGHT_CHARS:
            if self._formatter is None:
                from pygments.formatters import HtmlFormatter

                style = "monokai" if self.dark else "friendly"
                self._formatter = HtmlFormatter(style=style, noclasses=True, nowrap=True)
            body = highlight(shown, _lexer(lang), self._formatter).rstrip("\n")
        else:
            body = html.escape(shown)
        if len(shown) < len(code):
            lines = code.count("\n") + 1
            note = f"… {lines:,} lines in all (Copy copies all)"
            body += f'\n<span style="color:{self.muted}">{note}</span>'
        copy = base64.urlsafe_b64encode(code.encode()).decode()
        label = html.escape(lang)
        # A table: Qt paints block backgrounds for table cells reliably, not for <pre>.
        return (
            f'<table width="100%" cellpadding="8" cellspacing="0" style="background-color:'
            f'{self.code_bg};margin-top:4px;margin-bottom:4px"><tr><td style="color:{self.muted}">'
            f'{label}</td><td align="right"><a href="{COPY_SCHEME}:{copy}" style="color:'
            f'{self.muted}">Copy</a></td></tr><tr><td colspan="2"><pre style="color:'
            f'{self.code_fg};font-family:monospace;margin:0;white-space:pre-wrap">{body}</pre>'
            f"</td></tr></table>"
        )

    def render(self, text: str) -> str:
        md = self._parser()
        env: dict[str, Any] = {}
        tokens = md.parse(text, env)
        if tokens and max(t.level for t in tokens) >= NESTING - 1:
            # Deeper than the parser goes, where it drops the rest without a word: shown as
            # written instead, so nothing a model wrote goes missing.
            return plain_to_html(text)
        # Without the final line break, which Qt would read as a space ending the last paragraph.
        return str(md.renderer.render(tokens, md.options, env)).rstrip("\n")

    def code_spans(self, code: str, lang: str) -> list[list[Span]]:
        """Each line's coloured runs in ``code``, for a view that colours text it already shows
        (a code block's lines arrive as they stream; the colours come once it is complete)."""
        from pygments.styles import get_style_by_name

        style = get_style_by_name("monokai" if self.dark else "friendly")
        lines: list[list[Span]] = [[]]
        column = 0
        for _index, kind, value in _lexer(lang).get_tokens_unprocessed(code):
            look = style.style_for_token(kind)
            for i, part in enumerate(value.split("\n")):
                if i:
                    lines.append([])
                    column = 0
                if part and (look["color"] or look["bold"] or look["italic"]):
                    color = f"#{look['color']}" if look["color"] else ""
                    lines[-1].append(Span(column, len(part), color, look["bold"], look["italic"]))
                column += len(part)
        return lines


class Span(NamedTuple):
    start: int
    length: int
    color: str  # "#rrggbb", or "" for the text's own colour
    bold: bool
    italic: bool


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

"""Markdown split into top-level blocks as it streams, so that a view renders each block once and
cuts the ones too big to show whole.

The blocks are those a reader sees: prose (paragraphs, lists, tables, quotes), code (a fenced
block at the start of a line, or lines that are plainly code though the model sent no fence) and
long prose (one block too big to render at once: a huge table, a megabyte line). Scanning costs
the new text only: ``BlockScanner.feed`` resumes at the last unfinished line.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from enum import Enum

# What a view shows of a big block before "Show all". Costs measured here (2 cores): markdown-it
# ~1 ms per KB of plain prose and up to ~0.05 ms per markup character ("![a ![a …": 12 KB in
# 0.28 s); Qt ~0.25 ms per table row laid out and painted; Pygments ~2 ms per KB of code.
LONG_CHARS = 12_000  # a prose block longer than this, or of more lines, is cut
LONG_LINES = 200
LONG_COST = 24_000  # or whose ``render_cost`` exceeds this
HEAD_COST = 12_000  # at most this much of a cut block is shown
# What markdown-it spends on each markup character beyond plain text, in µs measured here: link
# brackets and image marks most (12 KB of "![a " took 0.28 s), emphasis less, code and HTML little.
MARKUP_COSTS = (
    ("[", 40),
    ("![", 50),
    ("<", 20),
    ("*", 12),
    ("_", 12),
    ("~", 12),
    ("`", 5),
    ("&", 5),
)
TABLE_LINES = 50  # or which is a table of more lines (a table is rendered whole at each update)
HEAD_CHARS = 2_000  # what a cut prose block shows
HEAD_LINES = 40
CODE_LINES = 100  # what a code block shows before "Show all"
CODE_CHARS = 12_000
CODE_LINE_CHARS = 1_000  # of each of its lines
HIGHLIGHT_CHARS = 20_000  # code longer than this is shown without colours
VIEW_LINE_CHARS = 10_000  # "Show all" breaks longer lines for display (Qt lays out a line whole)


class Kind(Enum):
    PROSE = "prose"
    CODE = "code"
    LONG = "long"


@dataclass(frozen=True)
class Block:
    """``text[start:end]`` of the scanned text; for code, its lines are
    ``text[body_start:body_end]`` (without the fences and the last line break)."""

    kind: Kind
    start: int
    end: int
    lang: str = ""
    body_start: int = 0
    body_end: int = 0
    closed: bool = True  # code: its closing fence came (or the text ended)
    fenced: bool = True  # code: written between fences, not recognised as code
    lines: int = 0


_FENCE = re.compile(r"(`{3,}|~{3,})(.*)")
_CLOSING = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*\r?")
_CLOSING_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*\r?$", re.MULTILINE)
_NEXT_BLANK_OR_FENCE = re.compile(r"^(?:[ \t]*\r?$|```|~~~)", re.MULTILINE)
# A line that can only be code: a definition, an import, a block opener, a statement's end.
_STRONG = re.compile(
    r"(?:async\s+)?(?:def|class)\s+\w+.*:\s*$"
    r"|import\s+[\w.]+(?:\s+as\s+\w+)?\s*$"
    r"|from\s+[\w.]+\s+import\s+\S.*$"
    r"|(?:for|while|if|elif|else|try|except|finally|with)\b.*:\s*$"
    r"|#include\s*[<\"]"
    r"|(?:function|const|let|var|public|private|static|fn|func|package|using|namespace)\s.*[;{(=]"
    r"|.*[;{]\s*$"
    r"|[}\])]+[;,)]*\s*$"
)
# A line that reads as code once code has begun: an assignment, a call, a return.
_WEAK = re.compile(
    r"[\w.\[\]'\"]+\s*(?:[-+*/%|&]?=|\()|(?:return|pass|break|continue|yield|raise)\b"
)
_PROSE_START = re.compile(r"(?:[-*+]|\d{1,9}[.)])\s|>|#{1,6}\s|\|")
_GUESSES = (
    (re.compile(r"(?:async\s+)?def\s|class\s.*:\s*$|import\s|from\s"), "python"),
    (re.compile(r"#include"), "c"),
    (re.compile(r"function\s|const\s|let\s|var\s"), "javascript"),
)
_DELIMITER_ROW = re.compile(r"\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*")


def _strong(line: str) -> bool:
    return not _PROSE_START.match(line) and bool(_STRONG.match(line))


def _codeish(line: str) -> bool:
    if line[:1] in (" ", "\t"):
        return True
    return _strong(line) or (not _PROSE_START.match(line) and bool(_WEAK.match(line)))


def guess_language(first_line: str) -> str:
    """The language of unfenced code, from its first line ("" when nothing says)."""
    for pattern, lang in _GUESSES:
        if pattern.match(first_line):
            return lang
    return ""


class BlockScanner:
    """Top-level blocks of Markdown that grows at its end (a streaming reply).

    ``feed`` takes the whole text each time; when it extends what was fed before, only the new
    text is scanned. ``done`` are the blocks that can no longer change; ``open_block()`` is the
    one still growing (its last line may be unfinished).
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.text = ""
        self.final = False
        self.done: list[Block] = []
        self._line = 0  # where the first line not yet scanned starts
        self._searched = 0  # no line break before this offset after _line
        self._start = 0  # the open block's start
        self._fence: tuple[str, int, str, int] | None = None  # char, length, language, body
        self._reset_prose()

    def _reset_prose(self) -> None:
        self._blank = False  # the previous line was blank
        self._lines = 0
        self._content = -1  # where the block's first non-blank line starts
        self._content_end = 0  # where its last non-blank line ends (before the line break)
        self._code = 0  # lines of unfenced code since the block began (-1: not code)
        self._markup = 0  # markup_cost of the block's complete lines
        self._lang = ""

    def feed(self, text: str, final: bool = False) -> None:
        if self.final or not text.startswith(self.text):
            self._reset()
        self.text = text
        first = text.find("\n", max(self._line, self._searched))
        self._searched = len(text)
        if first >= 0:
            end = text.rfind("\n", first) + 1  # complete lines end here
            self._scan(self._line, end)
            self._line = self._searched = end
        if final:
            if self._line < len(text):
                self._scan_line(self._line, len(text))
                self._line = len(text)
            last = self.open_block()
            if last is not None and not (last.kind is Kind.CODE and last.body_start == last.end):
                self.done.append(_closed(last))
            self._start = len(text)
            self.final = True

    def _scan(self, pos: int, end: int) -> None:
        """Scan the complete lines in ``text[pos:end]``, skipping at C speed over lines that
        cannot change anything: inside a fence, all but a closing fence; inside a paragraph or
        table that is not code, all but a blank line or a fence."""
        text = self.text
        while pos < end:
            if self._fence is not None:
                char, length = self._fence[0], self._fence[1]
                m = _CLOSING_LINE.search(text, pos, end)
                while m is not None and (m.group(1)[0] != char or len(m.group(1)) < length):
                    m = _CLOSING_LINE.search(text, m.end() + 1, end)
                if m is None:
                    return
                pos = m.start()
            elif self._content >= 0 and self._code < 0 and not self._blank:
                m = _NEXT_BLANK_OR_FENCE.search(text, pos, end)
                stop = m.start() if m is not None else end
                if stop > pos:
                    self._lines += text.count("\n", pos, stop)
                    self._markup += markup_cost(text, pos, stop)
                    self._content_end = stop - 1
                    pos = stop
                    continue
            nl = text.find("\n", pos, end)
            self._scan_line(pos, nl + 1)
            pos = nl + 1

    def open_block(self) -> Block | None:
        """The block still growing, or None."""
        end = len(self.text)
        if self._start >= end or self.final:
            return None
        if self._fence is not None:
            body = self._fence[3]
            return Block(
                Kind.CODE, self._start, end, self._fence[2], body, self._body_end(body), False
            )
        return self._prose_block(end, closed=False)

    def _body_end(self, body: int) -> int:
        """Where a fence's complete lines end, without the last line break."""
        end = self._line
        if end > body and self.text[end - 1] == "\n":
            end -= 1
        return max(body, end)

    def _prose_block(self, end: int, closed: bool) -> Block:
        if self._code >= 2:
            return Block(
                Kind.CODE,
                self._start,
                end,
                self._lang,
                self._content,
                self._content_end,
                closed,
                fenced=False,
                lines=self._lines,
            )
        size = end - self._start
        long = (
            size > LONG_CHARS
            or self._lines > LONG_LINES
            or size + self._markup > LONG_COST
            or (
                self._lines > TABLE_LINES
                and self._content >= 0
                and is_table(self.text, self._content)
            )
        )
        return Block(Kind.LONG if long else Kind.PROSE, self._start, end, lines=self._lines)

    def _end_block(self, end: int) -> None:
        if end > self._start:
            self.done.append(self._prose_block(end, closed=True))
        self._start = end
        self._reset_prose()

    def _scan_line(self, a: int, b: int) -> None:
        line = self.text[a:b].rstrip("\n")
        if self._fence is not None:
            char, length, lang, body = self._fence
            closing = _CLOSING.fullmatch(line)
            if closing and closing.group(1)[0] == char and len(closing.group(1)) >= length:
                self.done.append(Block(Kind.CODE, self._start, b, lang, body, max(body, a - 1)))
                self._fence = None
                self._start = b
                self._reset_prose()
            return
        fence = _FENCE.fullmatch(line.rstrip("\r"))
        if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
            if self._code >= 2 and not fence.group(2).strip():
                # A closing fence after code sent without its opening one: it ends that code.
                self._end_block(b)
                return
            self._end_block(a)
            lang = fence.group(2).strip().split(" ")[0].strip("{}.")
            self._fence = (fence.group(1)[0], len(fence.group(1)), lang, b)
            return
        if not line.strip():
            self._blank = True
            self._lines += 1
            return
        indented = line[:1] in (" ", "\t")
        if self._code >= 2:
            if not _codeish(line):
                self._end_block(a)  # prose again after unfenced code
        elif self._blank and not indented and self._content >= 0:
            self._end_block(a)  # the blocks before can no longer change
        if self._content < 0:
            self._content = a
            self._code = 1 if _strong(line) else -1
            self._lang = guess_language(line)
        elif self._code >= 1:
            self._code = self._code + 1 if _codeish(line) else -1
        self._content_end = b - 1 if self.text[b - 1 : b] == "\n" else b
        self._markup += markup_cost(self.text, a, b)
        self._blank = False
        self._lines += 1


def _closed(block: Block) -> Block:
    return replace(block, closed=True) if block.kind is Kind.CODE else block


def markup_cost(text: str, start: int, end: int) -> int:
    return sum(cost * text.count(mark, start, end) for mark, cost in MARKUP_COSTS)


def render_cost(text: str, start: int, end: int) -> int:
    """Roughly what rendering ``text[start:end]`` as Markdown costs, in µs here."""
    return end - start + markup_cost(text, start, end)


def safe_cut(text: str, at: int) -> int:
    """``at`` moved back so that no character is split from its combining marks or emoji parts."""
    while at > 0 and at < len(text):
        here, before = text[at], text[at - 1]
        if (
            unicodedata.combining(here)
            or here in "\u200d\ufe0f\ufe0e"
            or before == "\u200d"
            or "\U0001f3fb" <= here <= "\U0001f3ff"
        ):
            at -= 1
        else:
            break
    return at


def head_end(text: str, start: int, end: int, max_lines: int, max_chars: int) -> int:
    """Where the first ``max_lines`` lines of ``text[start:end]``, at most ``max_chars``
    characters, end (at a line break where one comes in time)."""
    limit = min(end, start + max_chars)
    pos = start
    for _ in range(max_lines):
        nl = text.find("\n", pos, limit)
        if nl < 0:
            return end if limit == end else (pos if pos > start else safe_cut(text, limit))
        pos = nl + 1
    return pos


def is_table(text: str, start: int) -> bool:
    """Whether the block at ``start`` is a Markdown table (a header row, then a delimiter row)."""
    first = text.find("\n", start, start + 4_000)
    if first < 0 or "|" not in text[start:first]:
        return False
    second = text.find("\n", first + 1, first + 4_000)
    row = text[first + 1 : second if second >= 0 else first + 4_000]
    return "-" in row and bool(_DELIMITER_ROW.fullmatch(row.rstrip("\r")))


def table_cells(row: str) -> list[str]:
    """One Markdown table row's cells, as written (pipes escaped with a backslash kept in)."""
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row)]


# Reasoning models write their thoughts before the answer, between markers: ``<think>`` in most
# (Qwen 3, DeepSeek R1, GLM, SmolLM3…), ``<seed:think>`` in Seed-OSS, ``[THINK]`` in Magistral.
THINKING_MARKERS = (
    ("<think>", "</think>"),
    ("<seed:think>", "</seed:think>"),
    ("[THINK]", "[/THINK]"),
)
# gpt-oss writes in channels (OpenAI's "harmony" format; llama.cpp spells these tokens out): its
# thoughts are the analysis channel's message, its answer the final channel's, after a header.
HARMONY_THINKING = "<|channel|>analysis<|message|>"
HARMONY_THINKING_ENDS = ("<|end|>", "<|start|>")
HARMONY_ANSWER = "<|channel|>final<|message|>"
HARMONY_HEADERS = (
    "<|end|><|start|>assistant" + HARMONY_ANSWER,
    "<|start|>assistant" + HARMONY_ANSWER,
)
_OPENERS = (*(opener for opener, _ in THINKING_MARKERS), HARMONY_THINKING, HARMONY_ANSWER)
_CLOSERS = tuple(closer for _, closer in THINKING_MARKERS)
_LONGEST_END = max(map(len, (*_CLOSERS, *HARMONY_THINKING_ENDS)))


@dataclass(frozen=True)
class ThinkingSplit:
    """A reply cut into its thinking, ``reply[thinking_start:thinking_end]`` (without markers
    and the blank space around them), and its answer, ``reply[answer_start:]``."""

    thinking_start: int = 0
    thinking_end: int = 0
    answer_start: int = 0
    found: bool = False  # the reply has thinking (maybe empty, maybe still going on)
    closed: bool = True  # its end marker came: what follows is the answer
    # An end marker may start here at the earliest (pass it back as ``searched`` when the reply
    # has grown, so that a streaming reply costs its new text).
    searched: int = 0

    def thinking(self, reply: str) -> str:
        return reply[self.thinking_start : self.thinking_end]

    def answer(self, reply: str) -> str:
        return reply[self.answer_start :] if self.answer_start else reply


def split_thinking(reply: str, streaming: bool = False, searched: int = 0) -> ThinkingSplit:
    """Where a reply's thinking and its answer are.

    Thinking is a block of reasoning markers (``THINKING_MARKERS``, gpt-oss' analysis channel)
    that opens the reply, or text ended by ``</think>`` with no opening marker: the chat
    template's reply header opened it (DeepSeek R1's does). A block not closed yet is still
    thinking (all of a reply stopped mid-thought). While ``streaming``, what may be the start
    of a marker is held back, so that the parts only grow as text comes.

    ``searched``: no end marker starts before this offset (``ThinkingSplit.searched`` of the
    split of this reply's shorter start).
    """
    lead = len(reply) - len(reply.lstrip())
    head = reply[lead : lead + 64]
    for opener, closer in THINKING_MARKERS:
        if head.startswith(opener):
            return _thinking(reply, lead + len(opener), (closer,), streaming, searched)
    if head.startswith(HARMONY_THINKING):
        start = lead + len(HARMONY_THINKING)
        return _thinking(reply, start, HARMONY_THINKING_ENDS, streaming, searched, harmony=True)
    if head.startswith(HARMONY_ANSWER):  # gpt-oss answering without thoughts
        return ThinkingSplit(answer_start=lead + len(HARMONY_ANSWER))
    if streaming and (not head or any(o.startswith(head) for o in _OPENERS)):
        return ThinkingSplit(answer_start=len(reply))  # a marker may be coming: wait for it
    at, closer = _first(reply, _CLOSERS, searched)
    if at < 0:
        return ThinkingSplit(searched=max(0, len(reply) - _LONGEST_END + 1))
    start, end = _strip(reply, lead, at)
    return ThinkingSplit(start, end, _answer_start(reply, at + len(closer)), True, True, at)


def _thinking(
    reply: str,
    start: int,
    ends: tuple[str, ...],
    streaming: bool,
    searched: int,
    harmony: bool = False,
) -> ThinkingSplit:
    at, marker = _first(reply, ends, max(start, searched))
    if at < 0:
        end = len(reply)
        if streaming:  # "</thi" may be the start of the end marker: not shown as thought
            end -= max(
                (k for e in ends for k in range(1, len(e)) if reply.endswith(e[:k])), default=0
            )
        first, last = _strip(reply, start, max(start, end))
        resume = max(start, len(reply) - _LONGEST_END + 1)
        return ThinkingSplit(first, last, len(reply), True, False, resume)
    first, last = _strip(reply, start, at)
    if not harmony:
        return ThinkingSplit(first, last, _answer_start(reply, at + len(marker)), True, True, at)
    for header in HARMONY_HEADERS:
        if reply.startswith(header, at):
            return ThinkingSplit(first, last, at + len(header), True, True, at)
        if streaming and header.startswith(reply[at : at + len(header)]):
            return ThinkingSplit(first, last, len(reply), True, True, at)  # its header comes
    # Another channel after the thoughts (a tool call): shown as written, less the end marker.
    rest = at + len("<|end|>") if marker == "<|end|>" else at
    return ThinkingSplit(first, last, rest, True, True, at)


def _first(text: str, markers: tuple[str, ...], start: int) -> tuple[int, str]:
    """The first of ``markers`` in ``text`` from ``start``: where, and which (-1, "": none)."""
    best, which = -1, ""
    longest = max(map(len, markers))
    for marker in markers:
        at = text.find(marker, start, len(text) if best < 0 else best + longest)
        if at >= 0 and (best < 0 or at < best):
            best, which = at, marker
    return best, which


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """``text[start:end]`` without the blank space at its ends, as offsets."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _answer_start(text: str, at: int) -> int:
    """Where the answer after an end marker at ``at`` starts: past the blank lines."""
    pos = at
    while pos < len(text) and text[pos] in " \t\r\n":
        if text[pos] == "\n":
            at = pos + 1
        pos += 1
    return at if pos < len(text) else len(text)

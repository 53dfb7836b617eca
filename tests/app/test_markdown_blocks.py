"""Splitting replies into blocks as they stream: the same blocks however the text arrives, code
found with or without fences, and big blocks marked for cutting."""

from __future__ import annotations

import random

import pytest

from app.markdown_blocks import (
    HEAD_CHARS,
    Block,
    BlockScanner,
    Kind,
    head_end,
    is_table,
    safe_cut,
    table_cells,
)

IS_PRIME = (
    "def is_prime(n):\n"
    "    if n < 2:\n"
    "        return False\n"
    "\n"
    "    for i in range(2, n):\n"
    "        if n % i == 0:\n"
    "            return False\n"
    "    return True"
)


def scan(text: str, final: bool = True) -> list[Block]:
    scanner = BlockScanner()
    scanner.feed(text, final)
    open_block = scanner.open_block()
    return scanner.done + ([open_block] if open_block else [])


def kinds(text: str) -> list[str]:
    return [b.kind.value for b in scan(text)]


def code_of(text: str) -> list[str]:
    return [text[b.body_start : b.body_end] for b in scan(text) if b.kind is Kind.CODE]


TEXTS = [
    "Hello\n\nWorld\n```python\ndef f():\n    return 1\n```\nAfter\n\n- a\n- b\n",
    "Here:\n\n" + IS_PRIME + "\n```\nThat is all.",
    "| a | b |\n|---|---|\n" + "| 1 | 2 |\n" * 80 + "\nEnd.",
    "~~~\ncode ``` inside\n~~~~\ntext\n````\n```\nstill code\n````\nend",
    "x" * 30_000 + "\n\nafter",
    "1. step\n   ```bash\n   ls\n   ```\n2. next\n\n> quote\n> more\n",
]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("final", [False, True])
def test_the_blocks_do_not_depend_on_how_the_text_arrived(text: str, final: bool) -> None:
    whole = BlockScanner()
    whole.feed(text, final)
    rng = random.Random(text)
    for _ in range(3):
        streamed = BlockScanner()
        shown = 0
        while shown < len(text):
            shown = min(len(text), shown + rng.randint(1, 60))
            streamed.feed(text[:shown], final and shown == len(text))
        assert streamed.done == whole.done
        assert streamed.open_block() == whole.open_block()


def test_fenced_code_is_its_own_block_with_its_language() -> None:
    text = "Intro\n```python\ndef f():\n    return 1\n```\nOutro"
    assert kinds(text) == ["prose", "code", "prose"]
    block = scan(text)[1]
    assert block.lang == "python"
    assert text[block.body_start : block.body_end] == "def f():\n    return 1"


def test_a_fence_closes_only_on_its_own_kind_and_length() -> None:
    text = "````md\n```\ninner\n```\n~~~\n````\nafter"
    assert code_of(text) == ["```\ninner\n```\n~~~"]
    assert kinds(text) == ["code", "prose"]


def test_an_open_fence_shows_its_complete_lines_while_it_streams() -> None:
    block = scan("```py\nx = 1\ny = 2\nz =", final=False)[-1]
    assert (block.kind, block.closed) == (Kind.CODE, False)
    text = "```py\nx = 1\ny = 2\nz ="
    assert text[block.body_start : block.body_end] == "x = 1\ny = 2"
    assert code_of(text) == ["x = 1\ny = 2\nz ="]  # the reply ended: its last line is code too


def test_code_sent_without_fences_is_code() -> None:
    text = "Here is a function:\n\n" + IS_PRIME + "\n```\nIt checks divisors."
    assert kinds(text) == ["prose", "code", "prose"]
    assert code_of(text) == [IS_PRIME]  # indentation and the blank line kept
    assert scan(text)[1].lang == "python"
    assert "It checks divisors." in text[scan(text)[2].start :]


@pytest.mark.parametrize(
    "prose",
    [
        "For example:\nthe value is 3.",
        "if you like:\nwe can go on.",
        "Roses are red,\nViolets are blue.",
        "- import the data;\n- then plot it;",
        "Use `x = 1` and then\ncall f(x) to finish.",
    ],
)
def test_prose_is_not_mistaken_for_code(prose: str) -> None:
    assert kinds(prose) == ["prose"]


def test_a_stray_fence_at_the_end_makes_no_empty_code_block() -> None:
    assert kinds("Some text\n```\n") == ["prose"]
    assert kinds("Some text\n```") == ["prose"]


@pytest.mark.parametrize(
    "text",
    [
        "| a | b |\n|---|---|\n" + "| 1 | 2 |\n" * 50_000,  # 50,000 rows
        "| a | b |\n|---|---|\n" + "| 1 | 2 |\n" * 60,  # a table re-rendered at every update
        "x" * 1_000_000,  # a megabyte line
        "![a " * 3000,  # markup that makes markdown-it work hard
        "".join(f"- item {i}\n" for i in range(300)),
    ],
)
def test_blocks_too_big_to_render_at_once_are_long(text: str) -> None:
    assert kinds(text) == ["long"]
    assert kinds(text + "\n\nAfter.") == ["long", "prose"]


def test_ordinary_blocks_are_not_long() -> None:
    table = "| a | b |\n|---|---|\n" + "| **1** | 2 |\n" * 40
    prose = "A paragraph about **lighthouses** and the sea. " * 100
    assert kinds(table + "\n" + prose) == ["prose", "prose"]


def test_a_head_ends_at_a_line_break_or_within_a_long_first_line() -> None:
    text = "one\ntwo\nthree\n"
    assert text[: head_end(text, 0, len(text), 2, 100)] == "one\ntwo\n"
    assert head_end("y" * 10_000, 0, 10_000, 40, HEAD_CHARS) == HEAD_CHARS
    assert head_end(text, 0, len(text), 40, 100) == len(text)


def test_cuts_do_not_split_emoji_or_accents() -> None:
    family = "👨\u200d👩\u200d👧"
    assert safe_cut("ab" + family, 4) == 2  # inside the family: before it
    assert safe_cut("e\u0301x", 1) == 0  # e + combining acute stay together
    assert safe_cut("abc", 2) == 2


def test_table_helpers() -> None:
    assert is_table("| a | b |\n|:--|--:|\n| 1 | 2 |", 0)
    assert not is_table("a | b\nnot a delimiter", 0)
    assert table_cells("| a | b \\| c | d |") == ["a", "b | c", "d"]

"""A thinking budget: a reasoning model's thinking ended after so many tokens.

Reasoning models write their thoughts between ``<think>`` and ``</think>``, then the answer.
With a budget, once a reply has spent that many tokens inside its open ``<think>`` block, the
engine writes the closing marker itself (``</think>`` and a new line, as llama.cpp's
``--reasoning-budget`` does) and the model goes on to its answer.

Only a block that opens the reply counts: one the chat template opens in the prompt (DeepSeek
R1's header ends in ``<think>``), or the reply's first text (Qwen 3 writes it itself). A
``<think>`` later in an answer is the model writing about tags, not thinking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.engine.templates import THINK_END, THINK_START

if TYPE_CHECKING:
    from app.engine.vocab import Vocabulary

_START, _END = THINK_START.encode(), THINK_END.encode()
CLOSE_THINKING = THINK_END + "\n"  # what the engine writes when the budget is spent


def closing_tokens(vocab: Vocabulary) -> list[int]:
    """The tokens the engine writes to end the thinking (``CLOSE_THINKING``). SentencePiece
    vocabularies tokenize a space after a special token's text; left out, it would start the
    answer with a space."""
    tokens = vocab.tokenize(CLOSE_THINKING.encode(), add_bos=False)
    return [t for t in tokens if vocab.piece(t) != b" "]


def opens_thinking(prompt: str) -> bool:
    """Whether a prompt leaves the reply inside a thinking block (a ``<think>`` with no
    ``</think>`` after it): a template's reply header that opens one, or a reply continued
    from the middle of its thinking."""
    return prompt.rfind(THINK_START) > prompt.rfind(THINK_END)


class ThinkingBudget:
    """Follows a reply's tokens and says when its thinking has had ``budget`` tokens.

    Fed every generated token's text (special tokens spelled out); ``due`` says when the engine
    must close the thinking. ``watching`` turns False once there is nothing more to follow (the
    thinking closed, or the reply began with something else), and the engine stops feeding it.
    """

    def __init__(self, budget: int, inside: bool) -> None:
        self.budget = budget
        self.inside = inside  # in an open <think> block
        self.spent = 0  # tokens generated inside it
        self.watching = True
        self._seen = b""  # before the block: the reply so far; inside: a tail to find </think>

    def due(self) -> bool:
        """Whether the thinking must end now, before the next token."""
        return self.inside and self.spent >= self.budget

    def feed(self, spelled: bytes) -> None:
        """The next generated token's text."""
        if self.inside:
            seen = self._seen + spelled
            if _END in seen:
                self.inside = self.watching = False
                return
            self.spent += 1
            self._seen = seen[-(len(_END) - 1) :]
            return
        self._seen += spelled
        start = self._seen.lstrip()
        if start.startswith(_START):
            rest = start[len(_START) :]
            if _END in rest:
                self.watching = False
                return
            self.inside = True
            self._seen = rest[-(len(_END) - 1) :]
        elif not _START.startswith(start):  # the reply did not start with its thinking
            self.watching = False

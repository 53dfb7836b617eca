"""Stop strings: a streamed reply ends before the first of them, which is never shown.

Text that could be the start of a stop string is held back until the next piece says whether it
is: with the stop "\\n\\nUser:", a piece ending in "\\n" waits, and comes out with the next piece
unless that one completes the stop. Each piece costs a scan of itself and the few characters held.

A chat reply also ends at its template's end-of-turn marker (TurnEnd), whatever the vocabulary
says about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.engine.vocab import Vocabulary


class StopScanner:
    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.matched = False  # a stop string came: nothing after it is to be shown

    def __bool__(self) -> bool:
        return bool(self._stops)

    def feed(self, text: str) -> str:
        """What of ``text`` (after what was held) can be shown now."""
        if self.matched:
            return ""
        seen = self._held + text
        found = [at for at in (seen.find(s) for s in self._stops) if at >= 0]
        if found:
            self.matched = True
            self._held = ""
            return seen[: min(found)]
        keep = self._partial_stop_at_end(seen)
        self._held = seen[len(seen) - keep :]
        return seen[: len(seen) - keep]

    def flush(self) -> str:
        """At the reply's end: what was held back was not a stop string after all."""
        held, self._held = self._held, ""
        return held

    def _partial_stop_at_end(self, text: str) -> int:
        """The length of the longest end of ``text`` that begins some stop string."""
        longest = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:n]):
                    longest = n
                    break
        return longest


@dataclass(frozen=True)
class TurnEnd:
    """Where a chat reply ends besides the vocabulary's end-of-generation tokens: at the chat
    template's end-of-turn marker, as a token (``tokens``) or spelled out in text (``strings``).

    llama.cpp marks end-of-generation tokens from the GGUF's metadata and a list of known names
    (``<|im_end|>``, ``<end_of_turn>``, ``<|eot_id|>``…); a model whose template ends turns with
    another marker (``<|turn_end|>``, ``<|assistant_end|>``) and whose metadata does not name it
    would otherwise write past its turn, into fake turns of the user's, until the token limit.
    """

    tokens: frozenset[int] = frozenset()
    strings: tuple[str, ...] = ()


def turn_end_stops(marker: str, vocab: Vocabulary) -> TurnEnd:
    """The template's end-of-turn ``marker`` (ChatTemplate.turn_end) in ``vocab``: the token it
    is where the vocabulary has it as one; else its text, which the model can only spell out in
    pieces (a template written for another vocabulary, as ChatML for a Gemma). Where it is a
    token, its text in a reply is the model writing about it ("</s>" closes HTML's <s>)."""
    if not marker:
        return TurnEnd()
    token = vocab.single_token(marker)
    return TurnEnd(frozenset({token})) if token >= 0 else TurnEnd(strings=(marker,))

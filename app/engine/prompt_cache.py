"""The last prompt's tokens and its reply's, kept so that the next prompt starts from them.

A follow-up prompt repeats the conversation so far and adds a little. Tokenizing all of it again
would cost time at every turn, and would not always give back the tokens the model generated (a
reply's text may tokenize differently), so the KV cache could not be reused past them. Instead
the shared start keeps its tokens and only the new text is tokenized.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Sequence

from app.engine.vocab import Vocabulary


def shared_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of two byte strings (binary search on slices)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # a[:lo] == b[:lo] and a[:hi+1] != b[:hi+1]
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists (both lists: a list never equals a
    tuple, however alike)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:  # the usual case (a follow-up), compared in C
        return n
    i = 0
    while a[i] == b[i]:
        i += 1
    return i


class PromptCache:
    """The tokens of the last prompt and of the reply generated after it, and what they spell.

    Marks ``(bytes, tokens)`` say where the first ``tokens`` of them spell the first ``bytes``
    of the text: the end of each prompt since the conversation began, and each reply token. A
    new prompt reuses the tokens up to the last mark inside the text it shares with them.
    """

    def __init__(self, vocab: Vocabulary) -> None:
        self._vocab = vocab
        self._tokens: list[int] = []
        self._spelled: list[bytes] = []  # joined into one when a prompt is matched against it
        self._marks: list[tuple[int, int]] = []
        self._prompt_length = 0

    @property
    def known_tokens(self) -> Sequence[int]:
        """The last prompt's tokens, then those generated after it (the KV cache holds all but
        maybe the last). The list itself: read it, do not keep it past the next prompt."""
        return self._tokens

    @property
    def prompt_length(self) -> int:
        """How many of ``known_tokens`` the last prompt sent for a reply had; its reply follows."""
        return self._prompt_length

    def tokens_for(self, data: bytes) -> tuple[list[int], int]:
        """Tokens for a formatted prompt and how many of them are reused from the cache.

        Up to the last mark inside the prefix this prompt shares with the previous prompt and
        reply, their tokens are kept as they are, so a reply stays the tokens the model generated
        (its text does not always tokenize back to them) and only the new tail is tokenized.
        """
        vocab = self._vocab
        cut, reuse = self._reusable(data)
        if reuse:
            rest = data[cut:]
            tail = vocab.tokenize(rest, add_bos=False) if rest else []
            # The tail must be what tokenizing the whole prompt would give after the cut: it is
            # when its pieces spell it exactly (byte-level BPE), or when it starts with a special
            # token, because llama.cpp splits text at special tokens before tokenizing the pieces
            # (SentencePiece vocabularies add a space after each; spelling them would not match).
            if b"".join(vocab.spelling(t) for t in tail) == rest or (
                tail and not vocab.piece(tail[0]) and rest.startswith(vocab.spelling(tail[0]))
            ):
                return self._tokens[:reuse] + tail, reuse
        return vocab.tokenize(data), 0

    def _reusable(self, data: bytes) -> tuple[int, int]:
        """The last mark (bytes, tokens) that lies within `data`'s shared prefix with the cache."""
        if not self._marks:
            return 0, 0
        spelled = b"".join(self._spelled)
        self._spelled = [spelled]
        shared = shared_prefix(spelled, data)
        i = bisect.bisect_right(self._marks, (shared, sys.maxsize))
        while i > 0:
            cut, reuse = self._marks[i - 1]
            # Split only between characters, never inside one's UTF-8 bytes.
            if cut == len(data) or data[cut] & 0xC0 != 0x80:
                return cut, reuse
            i -= 1
        return 0, 0

    def remember(self, data: bytes, tokens: list[int], reused: int) -> None:
        """Keep a prompt's text and tokens (from ``tokens_for``) for the next one to start from."""
        self._tokens = list(tokens)
        self._spelled = [data]
        del self._marks[bisect.bisect_right(self._marks, reused, key=lambda m: m[1]) :]
        self._marks.append((len(data), len(tokens)))

    def remember_sent(self, data: bytes, tokens: list[int], reused: int) -> None:
        """Keep a prompt sent for a reply: as ``remember``, and its reply follows it."""
        self.remember(data, tokens, reused)
        self._prompt_length = len(tokens)

    def reply_lists(self) -> tuple[list[int], list[bytes], list[tuple[int, int]], int]:
        """What the generation loop appends each reply token to: the tokens, their spellings,
        the marks, and the number of bytes spelled so far.

        The lists themselves, because appending to them in place costs less than a call per
        token. For each token the loop appends it, its spelling, and the mark (bytes spelled,
        tokens known) after it.
        """
        return self._tokens, self._spelled, self._marks, sum(len(b) for b in self._spelled)

"""A loaded model's vocabulary: text to tokens and tokens back to bytes."""

from __future__ import annotations

import ctypes
from types import ModuleType
from typing import Any


class Vocabulary:
    """Tokenizing, and each token's text, as llama.cpp's vocabulary of one loaded model has them.

    A token's bytes are looked up once and kept (``piece`` runs for every generated token). Valid
    while the model it came from is loaded.
    """

    def __init__(self, lib: ModuleType, handle: Any) -> None:
        self._lib = lib
        self.handle = handle  # llama.cpp's llama_vocab pointer
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self.bos_id = int(lib.llama_vocab_bos(handle))
        self._add_bos = bool(lib.llama_vocab_get_add_bos(handle))
        # What a chat template calls bos_token and eos_token.
        self.bos_text = self.special_text(self.bos_id)
        self.eos_text = self.special_text(int(lib.llama_vocab_eos(handle)))

    def tokenize(self, data: bytes, add_bos: bool = True) -> list[int]:
        """Tokens of UTF-8 text; special tokens written in it are parsed as such. ``add_bos``
        puts the model's BOS token first where the model wants one and the text lacks it."""
        lib = self._lib
        capacity = len(data) + 16
        arr = (lib.llama_token * capacity)()
        n = lib.llama_tokenize(self.handle, data, len(data), arr, capacity, False, True)
        if n < 0:
            capacity = -n
            arr = (lib.llama_token * capacity)()
            n = lib.llama_tokenize(self.handle, data, len(data), arr, capacity, False, True)
        tokens = list(arr[:n])
        if (
            add_bos
            and self._add_bos
            and self.bos_id >= 0
            and (not tokens or tokens[0] != self.bos_id)
        ):
            tokens.insert(0, self.bos_id)
        return tokens

    def single_token(self, text: str) -> int:
        """The token that is the whole of ``text`` (a special token's name included), or -1
        when the vocabulary writes it with several or none."""
        tokens = self.tokenize(text.encode(), add_bos=False)
        return tokens[0] if len(tokens) == 1 else -1

    def piece(self, token: int) -> bytes:
        """The bytes a token adds to the reply (empty for special tokens such as end of turn)."""
        piece = self._pieces.get(token)
        if piece is None:
            buf = self._piece_buf
            n = self._lib.llama_token_to_piece(self.handle, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._lib.llama_token_to_piece(self.handle, token, buf, len(buf), 0, False)
            piece = buf.raw[:n]
            self._pieces[token] = piece
        return piece

    def special_text(self, token: int) -> str:
        """A token's text with special tokens written out ("" for a missing token, -1)."""
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(256)
        n = self._lib.llama_token_to_piece(self.handle, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    def spelling(self, token: int) -> bytes:
        """A token's text as a chat template writes it (special tokens included)."""
        return self.piece(token) or self.special_text(token).encode()

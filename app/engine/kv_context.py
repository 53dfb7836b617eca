"""The llama.cpp context of a loaded model: its KV cache, and which tokens that cache holds.

The KV cache keeps what the model computed for every token evaluated so far, so a follow-up turn
evaluates only the tokens after the prefix it shares with the cache. KvContext is the one owner
of that cache: it evaluates tokens into it, drops a suffix, grows the context as the
conversation does, and knows whether the context's logits follow the last cached token.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from app.engine.native import INJECTED_FAULT, inject_fault
from app.engine.prompt_cache import common_prefix
from app.engine.types import EngineError

log = logging.getLogger(__name__)

# Tokens the KV cache starts with; it doubles as needed up to the setting. Read at each load (a
# test raises it to load without growing).
FIRST_CONTEXT = 256
_DECODE_ABORTED = 2  # what llama_decode returns when the abort callback said stop


class KvContext:
    """A llama.cpp context and exactly the tokens its KV cache holds, in order (one sequence).

    Created at full size first, to check that the context length asked for fits in memory, then
    small; ``make_room`` grows it as the conversation does. Besides memory, this is speed on the
    CPU: without flash attention llama.cpp stores V transposed, one row per context slot, so a
    larger context spreads the same attention reads over more memory (measured on SmolLM2 at
    1,000 tokens: a 1,280-token context generates 9% faster than a 4,096-token one; a short chat
    generates 4-5% faster in a 256-token context than in a 512-token one). Growing copies the
    cache into a new context: ~30 ms, at 256, 512, 1,024... tokens.

    Args:
        lib: the llama_cpp module.
        model: the llama_model the context is for; it outlives the context.
        n_ctx: the context length asked for: the largest the cache grows to.
        batch_size: the most tokens one evaluation step takes.
        threads: CPU threads for generating and for evaluating prompts.
        flash_attention: whether to use flash attention.
        safe_cpu: loaded in safe CPU mode (only for the fault injection, see app/engine/native.py).
        interrupted: set when the work under way must end; evaluation checks it.

    Raises:
        EngineError: the context does not fit in memory.
    """

    def __init__(
        self,
        lib: ModuleType,
        model: Any,
        *,
        n_ctx: int,
        batch_size: int,
        threads: int,
        flash_attention: bool,
        safe_cpu: bool,
        interrupted: threading.Event,
    ) -> None:
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = batch_size
        cparams.n_ubatch = batch_size
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        # When on, llama.cpp's AUTO still turns it off where the device cannot do it.
        cparams.flash_attn_type = (
            lib.LLAMA_FLASH_ATTN_TYPE_AUTO
            if flash_attention
            else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cparams.no_perf = True
        ctx = lib.llama_init_from_model(model, cparams)
        if not ctx:
            raise EngineError(
                f"Not enough memory for a {n_ctx}-token context with this model. "
                "Lower the context length in Settings."
            )
        max_size = int(lib.llama_n_ctx(ctx))
        # The whole context fits (just checked); start small and let the KV cache grow with the
        # conversation (see the class's docstring for why).
        if max_size > FIRST_CONTEXT:
            lib.llama_free(ctx)
            cparams.n_ctx = FIRST_CONTEXT
            ctx = lib.llama_init_from_model(model, cparams)
            if not ctx:
                raise EngineError("llama.cpp could not create a context (see the log).")
        self._lib = lib
        self._model = model
        self._cparams = cparams  # kept, to grow
        self._handle: Any = ctx
        self._max_size = max_size
        self._size = int(lib.llama_n_ctx(ctx))
        self.batch_size = batch_size  # tokens per llama_decode when evaluating
        self._safe_cpu = safe_cpu
        self._interrupted = interrupted
        self._tokens: list[int] = []  # exactly the tokens in the KV cache, in order
        # The cache's length when the context's output logits (the next token is sampled from
        # them) were computed: while it equals len(_tokens) they follow the last cached token.
        # -1 when they follow none (a new context, a failed or stopped evaluation).
        self._logits_at = -1
        self._stop: Callable[[], bool] | None = None  # the evaluation under way's
        self._abort_callback = lib.ggml_abort_callback(self._should_abort)  # kept alive

    @property
    def handle(self) -> Any:
        """The llama_context pointer (replaced when the context grows)."""
        return self._handle

    @property
    def size(self) -> int:
        """How many tokens the context holds now."""
        return self._size

    @property
    def max_size(self) -> int:
        """How many tokens it may grow to: the context length asked for, as llama.cpp made it."""
        return self._max_size

    @property
    def cached_tokens(self) -> Sequence[int]:
        """The tokens in the KV cache, in order. The list itself: copy it to keep a snapshot."""
        return self._tokens

    def cached_prefix(self, tokens: list[int]) -> int:
        """How many of the first ``tokens`` the KV cache already holds."""
        return common_prefix(self._tokens, tokens)

    def free(self) -> None:
        self._lib.llama_free(self._handle)
        self._handle = None

    def _should_abort(self, _data: Any) -> bool:
        stop = self._stop
        return self._interrupted.is_set() or (stop is not None and stop())

    def evaluate(self, tokens: list[int], stop: Callable[[], bool]) -> bool:
        """Decode prompt tokens in batches; False when ``stop()`` said so (the KV cache stays
        consistent and keeps the batches evaluated before)."""
        lib = self._lib
        self._stop = stop
        # The abort callback runs for every graph node; worth it for a batch, not for one token.
        lib.llama_set_abort_callback(self._handle, self._abort_callback, None)
        try:
            for start in range(0, len(tokens), self.batch_size):
                if stop():
                    return False
                chunk = tokens[start : start + self.batch_size]
                if INJECTED_FAULT and len(chunk) > 1:
                    inject_fault("evaluate", self._safe_cpu)
                arr = (lib.llama_token * len(chunk))(*chunk)
                rc = lib.llama_decode(self._handle, lib.llama_batch_get_one(arr, len(chunk)))
                if rc != 0:
                    self.trim(len(self._tokens))
                    self._logits_at = -1
                    if rc == _DECODE_ABORTED:
                        return False
                    raise EngineError(f"llama.cpp could not evaluate the prompt (error {rc}).")
                self._tokens.extend(chunk)
                self._logits_at = len(self._tokens)
        finally:
            lib.llama_set_abort_callback(self._handle, lib.ggml_abort_callback(), None)
            self._stop = None
        return True

    def trim(self, keep: int) -> int:
        """Drop all but the first ``keep`` cached tokens; returns how many stay (0 for a model
        that cannot drop a suffix, whose cache starts over)."""
        lib = self._lib
        memory = lib.llama_get_memory(self._handle)
        if not lib.llama_memory_seq_rm(memory, 0, keep, -1):
            # Recurrent models cannot drop a suffix: start over.
            lib.llama_memory_clear(memory, True)
            keep = 0
        del self._tokens[keep:]
        return keep

    def make_room(self, n_tokens: int) -> bool:
        """Grow the context to hold n_tokens (up to the setting), keeping the KV cache's contents.

        False when it is as large as the setting allows. The cached sequence is copied into a
        context of twice the size (or more), which takes milliseconds, not a new evaluation.
        """
        if n_tokens <= self._size:
            return True
        if self._size >= self._max_size:
            return False
        lib = self._lib
        size = self._size
        while size < n_tokens:
            size *= 2
        started = time.perf_counter()
        self._cparams.n_ctx = min(size, self._max_size)
        ctx = lib.llama_init_from_model(self._model, self._cparams)
        if not ctx:
            raise EngineError(
                f"Not enough memory to extend the context to {self._cparams.n_ctx} tokens. "
                "Lower the context length in Settings, or start a new chat."
            )
        carried = True
        if self._tokens:
            n = lib.llama_state_seq_get_size(self._handle, 0)
            state = (ctypes.c_uint8 * n)()
            ok = lib.llama_state_seq_get_data(self._handle, state, n, 0) == n
            carried = ok and lib.llama_state_seq_set_data(ctx, state, n, 0) == n
        lib.llama_free(self._handle)
        self._handle = ctx
        self._size = int(lib.llama_n_ctx(ctx))
        self._logits_at = -1  # a new context has computed nothing yet
        if self._tokens and not carried:  # not seen; evaluating again is slow but correct
            log.warning("could not carry the KV cache into the larger context; evaluating again")
            tokens, self._tokens = self._tokens, []
            self.evaluate(tokens, lambda: False)
        log.info(
            "context grown to %d tokens (%d cached) in %.0f ms",
            self._size,
            len(self._tokens),
            (time.perf_counter() - started) * 1000,
        )
        return True

    def keep_prefix(self, tokens: list[int], room: int) -> int:
        """Keep what the KV cache shares with ``tokens`` (dropping the rest), make room for them
        and ``room`` more, and return how many are kept. When all of them are, the last one is
        evaluated again unless the context's logits are its: the next token is sampled from them.
        """
        keep = common_prefix(self._tokens, tokens)
        if keep < len(self._tokens):
            keep = self.trim(keep)
        self.make_room(min(len(tokens) + room, self._max_size))  # a new context computed nothing
        if keep == len(tokens) and self._logits_at != keep:
            keep = self.trim(keep - 1)
        return keep

    def start_decoding(self) -> tuple[list[int], Any, int]:
        """What a loop that decodes one token at a time needs: the cached tokens' list (it
        appends each token it decodes), the llama_context and its size.

        The list itself, not a copy, and no method call per token: that loop is the generation
        loop, where every token's overhead counts. Ask again after ``make_room``, which replaces
        all three. Until ``decoding_ended`` the logits are not known to follow the cache.
        """
        self._logits_at = -1
        return self._tokens, self._handle, self._size

    def decoding_ended(self) -> None:
        """The decoding loop ended before decoding its last pick: the logits follow the cache."""
        self._logits_at = len(self._tokens)

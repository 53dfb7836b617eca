"""The local engine: llama.cpp through llama-cpp-python's low-level API.

Hearth owns the generation loop instead of using ``create_chat_completion(stream=True)``: that path
re-decodes the whole reply at every token and holds text back after an invalid UTF-8 byte. Here each
token costs one ``llama_decode``, one call into llama.cpp's C sampler chain, a cached piece lookup
and an incremental UTF-8 decode. Prompt evaluation can be stopped midway through llama.cpp's abort
callback, and follow-up turns evaluate only the tokens after the prefix already in the KV cache.

Every call must come from the one thread that owns the engine.
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np

from app.engine.templates import resolve_template
from app.engine.types import (
    ChatMessage,
    EngineError,
    GenerationStats,
    LoadedModel,
    LoadParams,
    Reply,
)
from app.model_file import InvalidModelFile, read_model_file
from app.settings import Sampling

log = logging.getLogger(__name__)
_native_log = logging.getLogger("llama.cpp")

_lib: ModuleType | None = None
_log_callback: Any = None
_log_buffer: list[str] = []
# ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continues the previous line
_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_last_level = [logging.DEBUG]
_RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp picks a fresh seed
_DECODE_ABORTED = 2
FIRST_CONTEXT = 256  # tokens the KV cache starts with; it doubles as needed up to the setting
# Room made before evaluating: for a prompt, a few tokens of its reply (more is made as it grows,
# mid-reply, so that growing does not delay the first token); when preparing the next turn, the
# next message and the start of its reply, so that the context grows while the user types.
REPLY_ROOM = 16
NEXT_TURN_ROOM = 128
PENALTY_LAST_N = 64  # the repeat penalty looks back this many generated tokens
PREPARE_LIMIT = 512  # prepare() evaluates at most this many tokens ahead
PROBE = "Hello"  # the next user message, as prepare() imagines its start


# Fault injection for tests and benchmarks, the way llama.cpp's AMX kernels crash in some VMs:
# SIGILL "evaluate" (at the first batch of more than one token) or "load", outside safe CPU mode;
# with ":always", in safe mode too, as a build for another processor would.
_INJECTED_FAULT = os.environ.get("HEARTH_INJECT_CPU_FAULT", "")


def _inject_fault(where: str, safe_cpu: bool) -> None:
    place, _, when = _INJECTED_FAULT.partition(":")
    if place == where and (when == "always" or not safe_cpu):
        log.warning("injecting an illegal-instruction fault (HEARTH_INJECT_CPU_FAULT)")
        logging.shutdown()
        signal.raise_signal(signal.SIGILL)


def llama() -> ModuleType:
    """Import llama-cpp-python on first use: its large native library is not needed at startup."""
    global _lib, _log_callback
    if _lib is None:
        import llama_cpp

        # llama.cpp's own log goes into our log file, never to stderr (a frozen app may have none).
        def on_log(level: int, text: bytes, _user: Any) -> None:
            if level != 5:
                _last_level[0] = _LEVELS.get(level, logging.DEBUG)
            _log_buffer.append(text.decode("utf-8", "replace"))
            if _log_buffer[-1].endswith("\n"):
                line = "".join(_log_buffer).rstrip()
                _log_buffer.clear()
                _native_log.log(_last_level[0], "%s", line)

        _log_callback = llama_cpp.llama_log_callback(on_log)
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _lib = llama_cpp
    return _lib


def supports_gpu_offload() -> bool:
    return bool(llama().llama_supports_gpu_offload())


def _release_freed_memory() -> None:
    """Hand memory freed by an unload back to the system (glibc keeps it for reuse otherwise:
    measured with SmolLM2, 17 of the 130 MB a load took stayed with the process)."""
    if sys.platform.startswith("linux"):
        # AttributeError: not glibc (musl has no malloc_trim)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)


def _shared_prefix(a: bytes, b: bytes) -> int:
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


def _common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:  # the usual case (a follow-up), compared in C
        return n
    i = 0
    while a[i] == b[i]:
        i += 1
    return i


class _TokenPicker:
    """Chooses each next token exactly as llama.cpp's sampler chain would, for less work.

    llama.cpp's repeat penalty looks up every one of the vocabulary's entries (49k-256k) in a hash
    map at every token; here only the <= 64 recent tokens are penalized, in place in the logits,
    before the rest of the chain reads them. Greedy decoding is an argmax over the logits instead
    of a chain that first copies them into an array of candidates. Measured per token on SmolLM2
    (49k entries): default settings 0.25 -> 0.12 ms, greedy 0.10 -> 0.015 ms. The tokens are the
    same (tests/app/test_engine.py compares both with llama.cpp's own chain).
    """

    def __init__(self, lib: ModuleType, vocab: Any, s: Sampling) -> None:
        self._lib = lib
        self._n_vocab = int(lib.llama_vocab_n_tokens(vocab))
        self._penalty = float(np.float32(s.repeat_penalty))  # the float llama.cpp would use
        self._recent: deque[int] = deque()
        self._counts: dict[int, int] = {}
        self._chain: Any = None
        if s.temperature > 0:
            chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
            add = lib.llama_sampler_chain_add
            if s.top_k > 0:
                add(chain, lib.llama_sampler_init_top_k(s.top_k))
            if s.top_p < 1.0:
                add(chain, lib.llama_sampler_init_top_p(s.top_p, 1))
            if s.min_p > 0.0:
                add(chain, lib.llama_sampler_init_min_p(s.min_p, 1))
            add(chain, lib.llama_sampler_init_temp(s.temperature))
            seed = _RANDOM_SEED if s.seed < 0 else s.seed & 0xFFFFFFFF
            add(chain, lib.llama_sampler_init_dist(seed))
            self._chain = chain

    def pick(self, ctx: Any) -> int:
        """The next token after the last one ``ctx`` evaluated."""
        if self._counts or self._chain is None:
            logits = self._lib.llama_get_logits_ith(ctx, -1)
            # llama.cpp's rule: shrink a positive logit, grow a negative one's size. Computed in
            # double and stored as float, which rounds exactly as llama.cpp's float arithmetic.
            penalty = self._penalty
            for t in self._counts:
                v = logits[t]
                logits[t] = v * penalty if v <= 0 else v / penalty
            if self._chain is None:  # greedy: the first of equal maxima, as llama.cpp's
                as_array = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
                return self._remember(int(as_array.argmax()))
        return self._remember(int(self._lib.llama_sampler_sample(self._chain, ctx, -1)))

    def _remember(self, token: int) -> int:
        if self._penalty == 1.0:
            return token
        self._recent.append(token)
        self._counts[token] = self._counts.get(token, 0) + 1
        if len(self._recent) > PENALTY_LAST_N:
            old = self._recent.popleft()
            if self._counts[old] == 1:
                del self._counts[old]
            else:
                self._counts[old] -= 1
        return token

    def close(self) -> None:
        if self._chain is not None:
            self._lib.llama_sampler_free(self._chain)
            self._chain = None


class LlamaCppEngine:
    def __init__(self) -> None:
        self._model: Any = None
        self._ctx: Any = None
        self._vocab: Any = None
        self._loaded: LoadedModel | None = None
        self._formatter: Any = None
        self._n_ctx = 0  # the context length asked for: the KV cache grows up to it
        self._ctx_size = 0  # what the current llama.cpp context holds
        self._cparams: Any = None
        self._n_batch = 512
        self._cached: list[int] = []  # exactly the tokens in the KV cache, in order
        # The cache's length when the context's output logits (the next token is sampled from
        # them) were computed: while it equals len(_cached) they follow the last cached token.
        # -1 when they follow none (a new context, a failed or stopped evaluation).
        self._logits_at = -1
        # The last prompt's tokens and those sampled after it (the KV cache holds all but maybe
        # the last), what they spell, and marks (bytes, tokens) where the first `tokens` of them
        # spell the first `bytes`.
        self._known: list[int] = []
        self._spelled: list[bytes] = []
        self._marks: list[tuple[int, int]] = []
        self._prompt_length = 0  # of the last prompt, whose reply follows it in the cache
        # The last conversation formatted and its text: a chat sending what was prepared while
        # the user typed does not render the template again.
        self._formatted: tuple[list[ChatMessage], str] | None = None
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self._add_bos = False
        self._bos_id = -1
        self._bos_text = ""
        self._stop: Callable[[], bool] | None = None
        self._abort_callback: Any = None
        self._safe_cpu = False
        self._interrupted = threading.Event()  # set by interrupt(): ends the work under way

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    # loading

    def load(
        self, path: str, params: LoadParams, cancel: threading.Event | None = None
    ) -> LoadedModel:
        try:
            info = read_model_file(Path(path))
        except InvalidModelFile as e:
            raise EngineError(f"{Path(path).name}: {e}") from None
        self.unload()
        lib = llama()
        gpu = bool(lib.llama_supports_gpu_offload())
        layers = (
            0 if not gpu else (info.block_count + 1 if params.gpu_layers < 0 else params.gpu_layers)
        )

        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = layers
        # Safe CPU mode: the plain CPU kernels only (see app/engine/cpu_safety.py).
        mparams.use_extra_bufts = not params.safe_cpu
        self._safe_cpu = params.safe_cpu
        if _INJECTED_FAULT:
            _inject_fault("load", params.safe_cpu)
        if cancel is not None:

            def on_progress(_progress: float, _user: Any) -> bool:
                return not cancel.is_set()

            progress_cb = lib.llama_progress_callback(on_progress)
            mparams.progress_callback = progress_cb
        started = time.perf_counter()
        model = lib.llama_model_load_from_file(path.encode(), mparams)
        if not model:
            if cancel is not None and cancel.is_set():
                raise EngineError("Loading was cancelled.")
            raise EngineError(
                f"llama.cpp could not load {Path(path).name} (see the log for its reason). "
                "The architecture may be too new for this llama.cpp, or memory ran out."
            )
        n_ctx = params.context_length
        if info.context_length and n_ctx > info.context_length:
            n_ctx = info.context_length  # beyond the trained length the model only babbles
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = params.batch_size
        cparams.n_ubatch = params.batch_size
        cparams.n_threads = params.threads
        cparams.n_threads_batch = params.threads
        mode = params.flash_attention
        flash_on = mode == "on" or (mode == "auto" and layers > 0)
        # When on, llama.cpp's AUTO still turns it off where the device cannot do it.
        cparams.flash_attn_type = (
            lib.LLAMA_FLASH_ATTN_TYPE_AUTO if flash_on else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cparams.no_perf = True
        ctx = lib.llama_init_from_model(model, cparams)
        if not ctx:
            lib.llama_model_free(model)
            raise EngineError(
                f"Not enough memory for a {n_ctx}-token context with this model. "
                "Lower the context length in Settings."
            )
        self._n_ctx = int(lib.llama_n_ctx(ctx))
        # The whole context fits (just checked); start small and let the KV cache grow with the
        # conversation. Besides memory, this is speed on the CPU: without flash attention
        # llama.cpp stores V transposed, one row per context slot, so a larger context spreads
        # the same attention reads over more memory (measured on SmolLM2 at 1,000 tokens: a
        # 1,280-token context generates 9% faster than a 4,096-token one; a short chat generates
        # 4-5% faster in a 256-token context than in a 512-token one). Growing copies the cache
        # into a new context: ~30 ms, at 256, 512, 1,024... tokens.
        if self._n_ctx > FIRST_CONTEXT:
            lib.llama_free(ctx)
            cparams.n_ctx = FIRST_CONTEXT
            ctx = lib.llama_init_from_model(model, cparams)
            if not ctx:
                lib.llama_model_free(model)
                raise EngineError("llama.cpp could not create a context (see the log).")
        self._model, self._ctx, self._cparams = model, ctx, cparams
        self._ctx_size = int(lib.llama_n_ctx(ctx))
        self._vocab = lib.llama_model_get_vocab(model)
        self._n_batch = params.batch_size
        self._abort_callback = lib.ggml_abort_callback(self._should_abort)

        template, source, template_name = resolve_template(
            info.chat_template, params.chat_template_override
        )
        notice = ""
        if source == "fallback":
            notice = (
                "This model has no chat template, so Hearth uses ChatML. If replies look wrong, "
                "pick the model's format in Settings → Chat template."
            )
        self._bos_id = int(lib.llama_vocab_bos(self._vocab))
        self._add_bos = bool(lib.llama_vocab_get_add_bos(self._vocab))
        self._bos_text = self._special_text(self._bos_id)
        eos_text = self._special_text(int(lib.llama_vocab_eos(self._vocab)))
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            self._formatter = Jinja2ChatFormatter(
                template, eos_token=eos_text, bos_token=self._bos_text
            )
        except Exception as e:  # a template that does not compile: say so and fall back
            log.warning("chat template of %s does not compile (%s); using ChatML", path, e)
            template, source, template_name = resolve_template(None, "")
            notice = f"The chat template could not be used ({e}); Hearth uses ChatML instead."
            self._formatter = Jinja2ChatFormatter(
                template, eos_token=eos_text, bos_token=self._bos_text
            )

        self._loaded = LoadedModel(
            path=path,
            name=info.name,
            context_length=self._n_ctx,
            template_source=source,  # type: ignore[arg-type]
            template_name=template_name,
            gpu_layers=layers,
            notice=notice,
            safe_cpu=params.safe_cpu,
        )
        log.info(
            "loaded %s in %.2fs: n_ctx=%d threads=%d gpu_layers=%d flash_attn=%s template=%s (%s)",
            path,
            time.perf_counter() - started,
            self._n_ctx,
            params.threads,
            layers,
            flash_on,
            template_name,
            source,
        )
        return self._loaded

    def unload(self) -> None:
        freed = self._model is not None
        if self._ctx is not None:
            llama().llama_free(self._ctx)
        if self._model is not None:
            llama().llama_model_free(self._model)
        self._model = self._ctx = self._vocab = self._formatter = self._cparams = None
        self._formatted = None
        self._ctx_size = 0
        self._loaded = None
        self._cached = []
        self._logits_at = -1
        self._known = []
        self._spelled = []
        self._marks = []
        self._prompt_length = 0
        self._pieces = {}
        if freed:
            _release_freed_memory()

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(256)
        n = llama().llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    # prompt

    def _tokenize(self, data: bytes, add_bos: bool = True) -> list[int]:
        lib = llama()
        capacity = len(data) + 16
        arr = (lib.llama_token * capacity)()
        n = lib.llama_tokenize(self._vocab, data, len(data), arr, capacity, False, True)
        if n < 0:
            capacity = -n
            arr = (lib.llama_token * capacity)()
            n = lib.llama_tokenize(self._vocab, data, len(data), arr, capacity, False, True)
        tokens = list(arr[:n])
        if (
            add_bos
            and self._add_bos
            and self._bos_id >= 0
            and (not tokens or tokens[0] != self._bos_id)
        ):
            tokens.insert(0, self._bos_id)
        return tokens

    def _prompt_to_tokens(self, data: bytes) -> tuple[list[int], int]:
        """Tokens for a formatted prompt and how many of them are reused from the cache.

        Up to the last mark inside the prefix this prompt shares with the previous prompt and
        reply, their tokens are kept as they are, so a reply stays the tokens the model generated
        (its text does not always tokenize back to them) and only the new tail is tokenized.
        """
        cut, reuse = self._reusable(data)
        if reuse:
            rest = data[cut:]
            tail = self._tokenize(rest, add_bos=False) if rest else []
            # The tail must be what tokenizing the whole prompt would give after the cut: it is
            # when its pieces spell it exactly (byte-level BPE), or when it starts with a special
            # token, because llama.cpp splits text at special tokens before tokenizing the pieces
            # (SentencePiece vocabularies add a space after each; spelling them would not match).
            if b"".join(self._spelling(t) for t in tail) == rest or (
                tail and not self._piece(tail[0]) and rest.startswith(self._spelling(tail[0]))
            ):
                return self._known[:reuse] + tail, reuse
        return self._tokenize(data), 0

    def _reusable(self, data: bytes) -> tuple[int, int]:
        """The last mark (bytes, tokens) that lies within `data`'s shared prefix with the cache."""
        if not self._marks:
            return 0, 0
        spelled = b"".join(self._spelled)
        self._spelled = [spelled]
        shared = _shared_prefix(spelled, data)
        i = bisect.bisect_right(self._marks, (shared, sys.maxsize))
        while i > 0:
            cut, reuse = self._marks[i - 1]
            # Split only between characters, never inside one's UTF-8 bytes.
            if cut == len(data) or data[cut] & 0xC0 != 0x80:
                return cut, reuse
            i -= 1
        return 0, 0

    def _spelling(self, token: int) -> bytes:
        """A token's text as a chat template writes it (special tokens included)."""
        return self._piece(token) or self._special_text(token).encode()

    def format_prompt(self, messages: list[ChatMessage]) -> str:
        if self._formatter is None:
            raise EngineError("No model is loaded.")
        if self._formatted is not None and self._formatted[0] == messages:
            return self._formatted[1]
        try:
            prompt: str = self._formatter(messages=messages).prompt
        except Exception as e:
            raise EngineError(f"The model's chat template rejected the conversation: {e}") from None
        self._formatted = ([cast(ChatMessage, dict(m)) for m in messages], prompt)
        return prompt

    def prompt_tokens(self, messages: list[ChatMessage], reserve: int) -> tuple[list[int], int]:
        """Tokens of the formatted conversation, leaving out the oldest turns until it fits."""
        head = [m for m in messages[:1] if m["role"] == "system"]
        body = messages[len(head) :]
        dropped = 0
        while True:
            data = self.format_prompt(head + body).encode("utf-8")
            tokens, reused = self._prompt_to_tokens(data)
            if len(tokens) + reserve <= self._n_ctx or len(body) <= 1:
                break
            cut = (
                2
                if len(body) > 2 and body[0]["role"] == "user" and body[1]["role"] == "assistant"
                else 1
            )
            body = body[cut:]
            dropped += cut
        if len(tokens) >= self._n_ctx:
            raise EngineError(
                f"The message is too long for this model's context ({len(tokens)} tokens; the "
                f"context holds {self._n_ctx}). Shorten it, or raise the context length in "
                "Settings."
            )
        self._remember_prompt(data, tokens, reused)
        self._prompt_length = len(tokens)
        return tokens, dropped

    def _remember_prompt(self, data: bytes, tokens: list[int], reused: int) -> None:
        """Keep a prompt's tokens for the next one to start from (see _prompt_to_tokens)."""
        self._known = list(tokens)
        self._spelled = [data]
        del self._marks[bisect.bisect_right(self._marks, reused, key=lambda m: m[1]) :]
        self._marks.append((len(data), len(tokens)))

    # generation

    def _should_abort(self, _data: Any) -> bool:
        stop = self._stop
        return self._interrupted.is_set() or (stop is not None and stop())

    def interrupt(self) -> None:
        """End the reply or prompt evaluation under way; safe from any thread."""
        self._interrupted.set()

    def close(self) -> None:
        self.unload()

    def _evaluate(self, tokens: list[int], stop: Callable[[], bool]) -> bool:
        """Decode prompt tokens in batches; False when ``stop()`` said so (the KV cache stays
        consistent and keeps the batches evaluated before)."""
        lib = llama()
        self._stop = stop
        # The abort callback runs for every graph node; worth it for a batch, not for one token.
        lib.llama_set_abort_callback(self._ctx, self._abort_callback, None)
        try:
            for start in range(0, len(tokens), self._n_batch):
                if stop():
                    return False
                chunk = tokens[start : start + self._n_batch]
                if _INJECTED_FAULT and len(chunk) > 1:
                    _inject_fault("evaluate", self._safe_cpu)
                arr = (lib.llama_token * len(chunk))(*chunk)
                rc = lib.llama_decode(self._ctx, lib.llama_batch_get_one(arr, len(chunk)))
                if rc != 0:
                    self._trim_cache(len(self._cached))
                    self._logits_at = -1
                    if rc == _DECODE_ABORTED:
                        return False
                    raise EngineError(f"llama.cpp could not evaluate the prompt (error {rc}).")
                self._cached.extend(chunk)
                self._logits_at = len(self._cached)
        finally:
            lib.llama_set_abort_callback(self._ctx, lib.ggml_abort_callback(), None)
            self._stop = None
        return True

    def _trim_cache(self, keep: int) -> int:
        lib = llama()
        memory = lib.llama_get_memory(self._ctx)
        if not lib.llama_memory_seq_rm(memory, 0, keep, -1):
            # Recurrent models cannot drop a suffix: start over.
            lib.llama_memory_clear(memory, True)
            keep = 0
        del self._cached[keep:]
        return keep

    def _make_room(self, n_tokens: int) -> bool:
        """Grow the context to hold n_tokens (up to the setting), keeping the KV cache's contents.

        False when it is as large as the setting allows. The cached sequence is copied into a
        context of twice the size (or more), which takes milliseconds, not a new evaluation.
        """
        if n_tokens <= self._ctx_size:
            return True
        if self._ctx_size >= self._n_ctx:
            return False
        lib = llama()
        size = self._ctx_size
        while size < n_tokens:
            size *= 2
        started = time.perf_counter()
        self._cparams.n_ctx = min(size, self._n_ctx)
        ctx = lib.llama_init_from_model(self._model, self._cparams)
        if not ctx:
            raise EngineError(
                f"Not enough memory to extend the context to {self._cparams.n_ctx} tokens. "
                "Lower the context length in Settings, or start a new chat."
            )
        carried = True
        if self._cached:
            n = lib.llama_state_seq_get_size(self._ctx, 0)
            state = (ctypes.c_uint8 * n)()
            ok = lib.llama_state_seq_get_data(self._ctx, state, n, 0) == n
            carried = ok and lib.llama_state_seq_set_data(ctx, state, n, 0) == n
        lib.llama_free(self._ctx)
        self._ctx = ctx
        self._ctx_size = int(lib.llama_n_ctx(ctx))
        self._logits_at = -1  # a new context has computed nothing yet
        if self._cached and not carried:  # not seen; evaluating again is slow but correct
            log.warning("could not carry the KV cache into the larger context; evaluating again")
            tokens, self._cached = self._cached, []
            self._evaluate(tokens, lambda: False)
        log.info(
            "context grown to %d tokens (%d cached) in %.0f ms",
            self._ctx_size,
            len(self._cached),
            (time.perf_counter() - started) * 1000,
        )
        return True

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = self._piece_buf
            n = llama().llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama().llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            piece = buf.raw[:n]
            self._pieces[token] = piece
        return piece

    def chat(
        self, messages: list[ChatMessage], sampling: Sampling, cancel: threading.Event
    ) -> Reply:
        if self._loaded is None:
            raise EngineError("No model is loaded.")
        stats = GenerationStats()
        return Reply(self._generate(messages, sampling.clamped(), cancel, stats), stats)

    def prepare(self, messages: list[ChatMessage], stop: Callable[[], bool] = lambda: False) -> int:
        """Evaluate ahead what the next ``chat`` will need, so that its first token comes sooner.

        When ``messages`` end with a user message (what the user is typing), that is the whole
        prompt for replying to it: a ``chat`` with these messages finds every token and the
        logits of the next one ready and starts sampling at once; one whose last message has
        changed since evaluates from where the two differ. Typing shows where the next message
        goes, so this may replace another conversation in the cache.

        Otherwise it is the template up to where the next user message's text goes: after a
        reply its end-of-turn markup and the next user header, in a new chat the system prompt.
        The next ``chat`` then evaluates only the user's message and the assistant header. This
        never pushes another conversation out of the cache (the user may go back to it) and
        stops at PREPARE_LIMIT tokens.

        Returns the number of tokens evaluated: 0 when there was nothing to do, when the prompt
        may have to leave out early turns, or when a limit above applies. ``stop()`` (checked
        during evaluation) abandons the rest.
        """
        if self._formatter is None:
            return 0
        self._interrupted.clear()
        draft = bool(messages) and messages[-1]["role"] == "user"
        try:
            tokens = self._prompt_ahead(messages) if draft else self._next_turn_start(messages)
        except EngineError:
            return 0
        if not tokens:
            return 0
        keep = _common_prefix(self._cached, tokens)
        if not draft:
            # Only the last reply's tokens may go, when the template writes it differently in
            # history (some leave out a reply's reasoning).
            if keep < min(self._prompt_length, len(self._cached)):
                return 0
            if len(tokens) - keep > PREPARE_LIMIT:
                return 0
            if keep == len(tokens):
                return 0
        keep = self._keep_prefix(tokens, NEXT_TURN_ROOM)
        if keep == len(tokens):
            return 0
        started = time.perf_counter()
        done = self._evaluate(tokens[keep:], stop)
        log.debug(
            "prepared %d tokens ahead in %.0f ms%s",
            len(self._cached) - keep,
            (time.perf_counter() - started) * 1000,
            "" if done else " (stopped)",
        )
        return len(self._cached) - keep

    def _keep_prefix(self, tokens: list[int], room: int) -> int:
        """Keep what the KV cache shares with ``tokens`` (dropping the rest), make room for them
        and ``room`` more, and return how many are kept. When all of them are, the last one is
        evaluated again unless the context's logits are its: the next token is sampled from them.
        """
        keep = _common_prefix(self._cached, tokens)
        if keep < len(self._cached):
            keep = self._trim_cache(keep)
        self._make_room(min(len(tokens) + room, self._n_ctx))  # a new context computed nothing
        if keep == len(tokens) and self._logits_at != keep:
            keep = self._trim_cache(keep - 1)
        return keep

    def _fits_whole(self, tokens: list[int]) -> bool:
        """Whether a prompt this long is sent whole: one longer may leave out early turns to make
        room for the reply (up to a quarter of the context), so its start is not known yet."""
        return len(tokens) * 4 <= self._n_ctx * 3

    def _prompt_ahead(self, messages: list[ChatMessage]) -> list[int]:
        """The prompt's tokens for replying to ``messages`` (empty when it may be cut). They are
        kept like a sent prompt's, so a ``chat`` with these messages need not tokenize again."""
        data = self.format_prompt(messages).encode("utf-8")
        tokens, reused = self._prompt_to_tokens(data)
        if not self._fits_whole(tokens):
            return []
        self._remember_prompt(data, tokens, reused)
        return tokens

    def _next_turn_start(self, messages: list[ChatMessage]) -> list[int]:
        """The tokens of the next prompt up to where the next user message's text goes."""
        probe: list[ChatMessage] = [{"role": "user", "content": PROBE}]
        text = self.format_prompt(messages + probe)
        at = text.rfind(PROBE)
        if at <= 0:
            return []
        # Tokens of the prompt with the imagined message, cut where those of the text before the
        # message end: tokenizers may join the last character before it with its first word.
        ahead, _ = self._prompt_to_tokens(text.encode("utf-8"))
        before, _ = self._prompt_to_tokens(text[:at].encode("utf-8"))
        return ahead[: _common_prefix(before, ahead)] if self._fits_whole(ahead) else []

    def _generate(
        self,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
        stats: GenerationStats,
    ) -> Iterator[str]:
        lib = llama()
        started = time.perf_counter()
        interrupted = self._interrupted
        interrupted.clear()

        def stopped() -> bool:
            return cancel.is_set() or interrupted.is_set()

        reserve = max(1, min(sampling.max_tokens, self._n_ctx // 4))
        tokens, stats.messages_dropped = self.prompt_tokens(messages, reserve)
        stats.prompt_tokens = len(tokens)

        # Room for the prompt and a few tokens (the reply grows the context as it goes). A prompt
        # prepared while the user typed is all there, its last token's logits too.
        keep = self._keep_prefix(tokens, REPLY_ROOM)
        stats.prompt_tokens_evaluated = len(tokens) - keep
        if not self._evaluate(tokens[keep:], stopped):
            stats.stop_reason = "cancelled"
            stats.prompt_seconds = time.perf_counter() - started
            return
        prompt_done = time.perf_counter()
        stats.prompt_seconds = prompt_done - started

        picker = _TokenPicker(lib, self._vocab, sampling)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        one = (lib.llama_token * 1)()
        pick, decode, batch_one = picker.pick, lib.llama_decode, lib.llama_batch_get_one
        is_eog, vocab, ctx, piece = lib.llama_vocab_is_eog, self._vocab, self._ctx, self._piece
        first_at = 0.0
        generated = 0
        cached, known, spelled, marks = self._cached, self._known, self._spelled, self._marks
        spelled_bytes = sum(len(b) for b in spelled)
        ctx_size = self._ctx_size
        self._logits_at = -1  # decoding below; said again when the reply ends as it should
        try:
            while True:
                token = pick(ctx)
                if is_eog(vocab, token):
                    stats.stop_reason = "eos"
                    break
                generated += 1
                if generated == 1:
                    first_at = time.perf_counter()
                    stats.time_to_first_token = first_at - started
                token_bytes = piece(token)
                known.append(token)
                spelled.append(token_bytes or self._spelling(token))
                spelled_bytes += len(spelled[-1])
                marks.append((spelled_bytes, len(known)))
                text = decoder.decode(token_bytes)
                if text:
                    yield text
                if generated >= sampling.max_tokens:
                    stats.stop_reason = "length"
                    break
                if stopped():
                    stats.stop_reason = "cancelled"
                    break
                if len(cached) >= ctx_size:
                    if not self._make_room(len(cached) + 1):
                        stats.stop_reason = "context_full"
                        break
                    cached, ctx, ctx_size = self._cached, self._ctx, self._ctx_size
                one[0] = token
                rc = decode(ctx, batch_one(one, 1))
                if rc != 0:
                    raise EngineError(f"llama.cpp failed while generating (error {rc}).")
                cached.append(token)
            # The loop stops before decoding its last pick: the logits are the last cached token's.
            self._logits_at = len(self._cached)
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
        finally:
            picker.close()
            stats.generated_tokens = generated
            if generated:
                stats.generation_seconds = time.perf_counter() - first_at
                if generated > 1 and stats.generation_seconds > 0:
                    stats.tokens_per_second = (generated - 1) / stats.generation_seconds

"""The local engine: llama.cpp through llama-cpp-python's low-level API.

Hearth owns the generation loop instead of using ``create_chat_completion(stream=True)``: that path
re-decodes the whole reply at every token and holds text back after an invalid UTF-8 byte. Here each
token costs one ``llama_decode``, one call into llama.cpp's C sampler chain, a cached piece lookup
and an incremental UTF-8 decode. Prompt evaluation can be stopped midway through llama.cpp's abort
callback, and follow-up turns evaluate only the tokens after the prefix already in the KV cache.

This module orchestrates; the parts live beside it:

- ``native``: loading llama.cpp and a model's weights, its log, fault injection;
- ``vocab``: tokenizing and tokens' text; ``templates``: conversations to prompt text;
- ``prompt_cache``: the last prompt's and reply's tokens, reused by the next prompt;
- ``kv_context``: the llama.cpp context and the tokens its KV cache holds;
- ``sampling``: choosing each next token.

Every call must come from the one thread that owns the engine.
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from app.engine.grammar import InvalidRequest, grammar_for
from app.engine.kv_context import FIRST_CONTEXT, KvContext
from app.engine.native import llama, load_model, release_freed_memory, supports_gpu_offload
from app.engine.prompt_cache import PromptCache, common_prefix
from app.engine.sampling import TokenPicker
from app.engine.stops import StopScanner, TurnEnd, turn_end_stops
from app.engine.templates import ChatTemplate, resolve_template
from app.engine.thinking import ThinkingBudget, closing_tokens, opens_thinking
from app.engine.types import (
    NO_RULES,
    ChatMessage,
    EngineError,
    GenerationStats,
    LoadedModel,
    LoadParams,
    Reply,
    ReplyRules,
)
from app.engine.vocab import Vocabulary
from app.model_file import InvalidModelFile, ModelFileInfo, read_model_file
from app.settings import Sampling

# Imported from here by the process engine, bench/ and tests; FIRST_CONTEXT is read (and
# patched) in app.engine.kv_context.
__all__ = [
    "FIRST_CONTEXT",
    "NEXT_TURN_ROOM",
    "PREPARE_LIMIT",
    "PROBE",
    "REPLY_ROOM",
    "LlamaCppEngine",
    "llama",
    "supports_gpu_offload",
]

log = logging.getLogger(__name__)

# Room made before evaluating: for a prompt, a few tokens of its reply (more is made as it grows,
# mid-reply, so that growing does not delay the first token); when preparing the next turn, the
# next message and the start of its reply, so that the context grows while the user types.
REPLY_ROOM = 16
NEXT_TURN_ROOM = 128
PREPARE_LIMIT = 512  # prepare() evaluates at most this many tokens ahead
PROBE = "Hello"  # the next user message, as prepare() imagines its start


@dataclass(frozen=True)
class _Session:
    """What a load makes and its unload frees: the model and everything made for it."""

    model: Any  # the llama_model pointer
    info: LoadedModel
    vocab: Vocabulary
    template: ChatTemplate
    context: KvContext
    prompt_cache: PromptCache
    turn_end: TurnEnd  # where a chat reply ends besides the vocabulary's end-of-generation tokens


class LlamaCppEngine:
    """The Engine contract (app/engine/types.py) on llama.cpp, in this process.

    While a model is loaded its parts are public (``vocab``, ``template``, ``context``,
    ``prompt_cache``) so that tests and benchmarks can look at them without private fields.
    """

    def __init__(self) -> None:
        self._session: _Session | None = None
        self._interrupted = threading.Event()  # set by interrupt(): ends the work under way

    @property
    def loaded(self) -> LoadedModel | None:
        return self._session.info if self._session is not None else None

    def _current(self) -> _Session:
        if self._session is None:
            raise EngineError("No model is loaded.")
        return self._session

    # The parts of the loaded model (EngineError when none is).

    @property
    def vocab(self) -> Vocabulary:
        """The model's tokenizer and tokens' text."""
        return self._current().vocab

    @property
    def template(self) -> ChatTemplate:
        """The chat template in use (the model's, an override or ChatML)."""
        return self._current().template

    @property
    def context(self) -> KvContext:
        """The llama.cpp context and the tokens its KV cache holds."""
        return self._current().context

    @property
    def prompt_cache(self) -> PromptCache:
        """The last prompt's and reply's tokens, which the next prompt starts from."""
        return self._current().prompt_cache

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

        started = time.perf_counter()
        model = load_model(path, layers, params.safe_cpu, cancel)
        n_ctx = params.context_length
        if info.context_length and n_ctx > info.context_length:
            n_ctx = info.context_length  # beyond the trained length the model only babbles
        mode = params.flash_attention
        flash_on = mode == "on" or (mode == "auto" and layers > 0)
        try:
            context = KvContext(
                lib,
                model,
                n_ctx=n_ctx,
                batch_size=params.batch_size,
                threads=params.threads,
                flash_attention=flash_on,
                safe_cpu=params.safe_cpu,
                interrupted=self._interrupted,
            )
        except EngineError:
            lib.llama_model_free(model)
            raise
        try:
            session = self._start_session(path, info, params, lib, model, context, layers)
        except BaseException:
            context.free()
            lib.llama_model_free(model)
            raise
        self._session = session
        log.info(
            "loaded %s in %.2fs: n_ctx=%d threads=%d gpu_layers=%d flash_attn=%s template=%s (%s)",
            path,
            time.perf_counter() - started,
            context.max_size,
            params.threads,
            layers,
            flash_on,
            session.info.template_name,
            session.info.template_source,
        )
        return session.info

    def _start_session(
        self,
        path: str,
        info: ModelFileInfo,
        params: LoadParams,
        lib: ModuleType,
        model: Any,
        context: KvContext,
        layers: int,
    ) -> _Session:
        """The model's vocabulary and chat template (ChatML when its own does not compile)."""
        vocab = Vocabulary(lib, lib.llama_model_get_vocab(model))

        def has_token(marker: str) -> bool:
            return len(vocab.tokenize(marker.encode(), add_bos=False)) == 1

        template, source, template_name = resolve_template(
            info.chat_template, params.chat_template_override, info.architecture, has_token
        )
        notice = ""
        if source == "detected":
            notice = (
                f"This model has no chat template; its architecture and vocabulary are those of "
                f"the {template_name} format, so Hearth uses that. If replies look wrong, pick "
                "another in Settings → Chat template."
            )
        elif source == "fallback":
            notice = (
                "This model has no chat template, so Hearth uses ChatML. If replies look wrong, "
                "pick the model's format in Settings → Chat template."
            )
        try:
            chat_template = ChatTemplate(template, vocab.bos_text, vocab.eos_text)
        except Exception as e:  # a template that does not compile: say so and fall back
            log.warning("chat template of %s does not compile (%s); using ChatML", path, e)
            template, source, template_name = resolve_template(None, "")
            notice = f"The chat template could not be used ({e}); Hearth uses ChatML instead."
            chat_template = ChatTemplate(template, vocab.bos_text, vocab.eos_text)
        turn_end = turn_end_stops(chat_template.turn_end(), vocab)
        log.info("chat replies end at %s or an end-of-generation token", turn_end)
        loaded = LoadedModel(
            path=path,
            name=info.name,
            context_length=context.max_size,
            template_source=source,  # type: ignore[arg-type]
            template_name=template_name,
            gpu_layers=layers,
            notice=notice,
            safe_cpu=params.safe_cpu,
            thinking_switch=chat_template.has_thinking_switch,
        )
        return _Session(model, loaded, vocab, chat_template, context, PromptCache(vocab), turn_end)

    def unload(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.context.free()
            llama().llama_model_free(session.model)
            release_freed_memory()

    def interrupt(self) -> None:
        """End the reply or prompt evaluation under way; safe from any thread."""
        self._interrupted.set()

    def close(self) -> None:
        self.unload()

    # prompt

    def format_prompt(self, messages: list[ChatMessage], enable_thinking: bool = True) -> str:
        return self._current().template.format(messages, enable_thinking)

    def prompt_tokens(
        self,
        messages: list[ChatMessage],
        reserve: int,
        enable_thinking: bool = True,
        drop_oldest: bool = True,
    ) -> tuple[list[int], int]:
        """Tokens of the formatted conversation, leaving out the oldest turns until it fits with
        ``reserve`` tokens to spare (the system prompt stays); with ``drop_oldest`` off, a
        conversation that does not fit is refused instead, saying so."""
        session = self._current()
        n_ctx, template, prompt_cache = (
            session.context.max_size,
            session.template,
            session.prompt_cache,
        )
        head = [m for m in messages[:1] if m["role"] == "system"]
        body = messages[len(head) :]
        dropped = 0
        while True:
            data = template.format(head + body, enable_thinking).encode("utf-8")
            tokens, reused = prompt_cache.tokens_for(data)
            if len(tokens) + reserve <= n_ctx or len(body) <= 1:
                break
            if not drop_oldest:
                raise EngineError(
                    f"The conversation no longer fits this model's context ({len(tokens):,} "
                    f"tokens, and the reply needs room too; the context holds {n_ctx:,}). Start "
                    "a new chat, raise the context length (Chat settings), or let Hearth leave "
                    "out the oldest messages (Settings → Replies)."
                )
            cut = (
                2
                if len(body) > 2 and body[0]["role"] == "user" and body[1]["role"] == "assistant"
                else 1
            )
            body = body[cut:]
            dropped += cut
        if not tokens:  # llama.cpp asserts on an empty batch: its process would abort
            raise EngineError(
                "The chat template turned the conversation into an empty prompt. Pick the "
                "model's format in Settings → Chat template."
            )
        if len(tokens) >= n_ctx:
            raise EngineError(
                f"The message is too long for this model's context ({len(tokens)} tokens; the "
                f"context holds {n_ctx}). Shorten it, or raise the context length in "
                "Settings."
            )
        prompt_cache.remember_sent(data, tokens, reused)
        return tokens, dropped

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
        session = self._session
        if session is None:
            return 0
        self._interrupted.clear()
        draft = bool(messages) and messages[-1]["role"] == "user"
        try:
            tokens = self._prompt_ahead(messages) if draft else self._next_turn_start(messages)
        except EngineError:
            return 0
        if not tokens:
            return 0
        context = session.context
        if not draft:
            keep = context.cached_prefix(tokens)
            # Only the last reply's tokens may go, when the template writes it differently in
            # history (some leave out a reply's reasoning).
            if keep < min(session.prompt_cache.prompt_length, len(context.cached_tokens)):
                return 0
            if len(tokens) - keep > PREPARE_LIMIT:
                return 0
            if keep == len(tokens):
                return 0
        keep = context.keep_prefix(tokens, NEXT_TURN_ROOM)
        if keep == len(tokens):
            return 0
        started = time.perf_counter()
        done = context.evaluate(tokens[keep:], stop)
        log.debug(
            "prepared %d tokens ahead in %.0f ms%s",
            len(context.cached_tokens) - keep,
            (time.perf_counter() - started) * 1000,
            "" if done else " (stopped)",
        )
        return len(context.cached_tokens) - keep

    def _fits_whole(self, tokens: list[int]) -> bool:
        """Whether a prompt this long is sent whole: one longer may leave out early turns to make
        room for the reply (up to a quarter of the context), so its start is not known yet."""
        return len(tokens) * 4 <= self.context.max_size * 3

    def _prompt_ahead(self, messages: list[ChatMessage]) -> list[int]:
        """The prompt's tokens for replying to ``messages`` (empty when it may be cut). They are
        kept like a sent prompt's, so a ``chat`` with these messages need not tokenize again."""
        data = self.format_prompt(messages).encode("utf-8")
        tokens, reused = self.prompt_cache.tokens_for(data)
        if not self._fits_whole(tokens):
            return []
        self.prompt_cache.remember(data, tokens, reused)
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
        ahead, _ = self.prompt_cache.tokens_for(text.encode("utf-8"))
        before, _ = self.prompt_cache.tokens_for(text[:at].encode("utf-8"))
        return ahead[: common_prefix(before, ahead)] if self._fits_whole(ahead) else []

    # generation

    def chat(
        self,
        messages: list[ChatMessage],
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        thinking, drop = sampling.enable_thinking, sampling.drop_oldest
        return self._reply(
            lambda reserve: self.prompt_tokens(messages, reserve, thinking, drop),
            sampling,
            cancel,
            rules,
            self._current().turn_end,
            lambda: self._header_opens_thinking(thinking),
        )

    def _header_opens_thinking(self, enable_thinking: bool) -> bool:
        """Whether the template's reply header opens a thinking block (DeepSeek R1's does), so
        that a reply starts inside its thinking."""
        hello: list[ChatMessage] = [{"role": "user", "content": "Hello"}]
        try:
            header = self._current().template.render(hello, enable_thinking=enable_thinking)
        except Exception:  # the same conversation's prompt fails first, and says why
            return False
        return opens_thinking(header)

    def complete(
        self,
        prompt: str,
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules = NO_RULES,
    ) -> Reply:
        return self._reply(
            lambda reserve: self.text_tokens(prompt, reserve),
            sampling,
            cancel,
            rules,
            self._current().turn_end if rules.ends_turn else TurnEnd(),
            lambda: opens_thinking(prompt),
        )

    def text_tokens(self, prompt: str, reserve: int) -> tuple[list[int], int]:
        """Tokens of a plain-text prompt (no template), which must leave room for ``reserve``."""
        session = self._current()
        data = prompt.encode("utf-8")
        tokens, reused = session.prompt_cache.tokens_for(data)
        if not tokens:
            raise InvalidRequest("the prompt is empty")
        if len(tokens) + reserve > session.context.max_size:
            raise EngineError(
                f"The prompt is too long for this model's context ({len(tokens)} tokens and "
                f"{reserve} for the reply; the context holds {session.context.max_size})."
            )
        session.prompt_cache.remember_sent(data, tokens, reused)
        return tokens, 0

    def _reply(
        self,
        prompt: Callable[[int], tuple[list[int], int]],
        sampling: Sampling,
        cancel: threading.Event,
        rules: ReplyRules,
        turn_end: TurnEnd,
        starts_thinking: Callable[[], bool],
    ) -> Reply:
        if self._session is None:
            raise EngineError("No model is loaded.")
        grammar = grammar_for(rules.response_format)
        stats = GenerationStats()
        sampling = sampling.clamped()
        budget = sampling.thinking_budget
        thinking = None if budget is None else ThinkingBudget(budget, starts_thinking())
        deltas = self._generate(
            prompt, sampling, cancel, stats, grammar, rules.stop, turn_end, thinking
        )
        return Reply(deltas, stats)

    def _generate(
        self,
        prompt: Callable[[int], tuple[list[int], int]],
        sampling: Sampling,
        cancel: threading.Event,
        stats: GenerationStats,
        grammar: str,
        stop: tuple[str, ...],
        turn_end: TurnEnd,
        thinking: ThinkingBudget | None = None,
    ) -> Iterator[str]:
        lib = llama()
        started = time.perf_counter()
        interrupted = self._interrupted
        interrupted.clear()

        def stopped() -> bool:
            return cancel.is_set() or interrupted.is_set()

        session = self._current()
        context, vocab = session.context, session.vocab
        reserve = max(1, min(sampling.max_tokens, context.max_size // 4))
        tokens, stats.messages_dropped = prompt(reserve)
        stats.notice = self._current().template.take_notice()
        stats.prompt_tokens = len(tokens)

        # Room for the prompt and a few tokens (the reply grows the context as it goes). A prompt
        # prepared while the user typed is all there, its last token's logits too.
        keep = context.keep_prefix(tokens, REPLY_ROOM)
        stats.prompt_tokens_evaluated = len(tokens) - keep
        if not context.evaluate(tokens[keep:], stopped):
            stats.stop_reason = "cancelled"
            stats.prompt_seconds = time.perf_counter() - started
            return
        prompt_done = time.perf_counter()
        stats.prompt_seconds = prompt_done - started

        # What the loop touches at every token is hoisted into locals: an attribute lookup there
        # is paid per token.
        try:
            picker = TokenPicker(lib, vocab.handle, sampling, grammar)
        except ValueError as e:
            raise InvalidRequest(f"the grammar cannot be used: {e}") from None
        stops = StopScanner(stop + turn_end.strings)
        end_tokens = turn_end.tokens
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        one = (lib.llama_token * 1)()
        pick, decode, batch_one = picker.pick, lib.llama_decode, lib.llama_batch_get_one
        is_eog, vocab_handle, piece = lib.llama_vocab_is_eog, vocab.handle, vocab.piece
        first_at = 0.0
        generated = 0
        forced: list[int] = []  # tokens the engine writes itself, last first (closing thoughts)
        known, spelled, marks, spelled_bytes = session.prompt_cache.reply_lists()
        cached, ctx, ctx_size = context.start_decoding()
        try:
            while True:
                if forced or (thinking is not None and thinking.due()):
                    if not forced:  # the thinking budget is spent: end the thoughts here
                        forced = closing_tokens(vocab)[::-1]
                        thinking = None
                    token = forced.pop()
                    token_bytes = vocab.spelling(token)  # shown even where it is a control token
                else:
                    token = pick(ctx)
                    if is_eog(vocab_handle, token) or token in end_tokens:
                        stats.stop_reason = "eos"
                        break
                    token_bytes = piece(token)
                generated += 1
                if generated == 1:
                    first_at = time.perf_counter()
                    stats.time_to_first_token = first_at - started
                known.append(token)
                spelled.append(token_bytes or vocab.spelling(token))
                spelled_bytes += len(spelled[-1])
                marks.append((spelled_bytes, len(known)))
                if thinking is not None:
                    thinking.feed(spelled[-1])
                    if not thinking.watching:
                        thinking = None
                text = decoder.decode(token_bytes)
                if stops and text:
                    text = stops.feed(text)
                    if stops.matched:
                        if text:
                            yield text
                        stats.stop_reason = "stop"
                        break
                if text:
                    yield text
                if generated >= sampling.max_tokens:
                    stats.stop_reason = "length"
                    break
                if stopped():
                    stats.stop_reason = "cancelled"
                    break
                if len(cached) >= ctx_size:
                    if not context.make_room(len(cached) + 1):
                        stats.stop_reason = "context_full"
                        break
                    cached, ctx, ctx_size = context.start_decoding()
                one[0] = token
                rc = decode(ctx, batch_one(one, 1))
                if rc != 0:
                    raise EngineError(f"llama.cpp failed while generating (error {rc}).")
                cached.append(token)
            # The loop stops before decoding its last pick: the logits are the last cached token's.
            context.decoding_ended()
            tail = "" if stops.matched else decoder.decode(b"", final=True)
            if stops and not stops.matched:
                tail = stops.feed(tail) + stops.flush()
            if tail:
                yield tail
        finally:
            picker.close()
            stats.generated_tokens = generated
            if generated:
                stats.generation_seconds = time.perf_counter() - first_at
                if generated > 1 and stats.generation_seconds > 0:
                    stats.tokens_per_second = (generated - 1) / stats.generation_seconds

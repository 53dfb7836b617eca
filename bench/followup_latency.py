"""Time to first token at turns 1, 5, 10 and 20 of one growing conversation (same new message size).

Measured three ways, each in a conversation of its own (greedy replies, so all three hold the same
history), with the engine prepared as the chat page prepares it:

- pasted: the message is pasted and sent at once. What precedes it (the previous turn's end and
  the next user header, or a new chat's system prompt) was evaluated while the user read the reply;
  the message and the assistant header are evaluated after Enter.
- typed: the message is typed and Enter follows its last word at typing speed. A pause in typing
  had the engine evaluate the prompt with the message up to its last word; the last word and what
  follows it are evaluated after Enter.
- paused: the message is typed and the user pauses (TYPING_PAUSE_MS) before Enter. The whole prompt
  was evaluated: the reply starts by sampling its first token.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import (
    figure,
    llama_bench_pp_seconds,
    machine,
    median,
    model_path,
    parser,
)

if TYPE_CHECKING:
    from app.engine.llama_cpp_engine import LlamaCppEngine
    from app.engine.types import ChatMessage
    from app.settings import Sampling

TURNS = [1, 5, 10, 20]
WAYS = ["pasted", "typed", "paused"]


def question(turn: int) -> str:
    return f"Question {turn}: name one interesting fact about the number {turn * 7}."


def conversation(
    engine: LlamaCppEngine, way: str, sampling: Sampling
) -> dict[int, tuple[float, int, int]]:
    """One 20-turn conversation sent the given way: (ttft, prompt tokens, evaluated) per turn."""
    # Warm up on another conversation so turn 1 is not a cold first decode.
    list(engine.chat([{"role": "user", "content": "Hello!"}], sampling, threading.Event()))
    history: list[ChatMessage] = []
    engine.prepare([])  # a new chat: what precedes its first message
    out: dict[int, tuple[float, int, int]] = {}
    for turn in range(1, max(TURNS) + 1):
        message = question(turn)
        if way == "typed":
            so_far = message.rsplit(" ", 1)[0]
            engine.prepare([*history, {"role": "user", "content": so_far}])
        elif way == "paused":
            engine.prepare([*history, {"role": "user", "content": message}])
        history.append({"role": "user", "content": message})
        reply = engine.chat(history, sampling, threading.Event())
        history.append({"role": "assistant", "content": "".join(reply)})
        engine.prepare(history)  # while the user reads the reply
        s = reply.stats
        if turn in TURNS:
            out[turn] = (s.time_to_first_token, s.prompt_tokens, s.prompt_tokens_evaluated)
            print(
                f"{way:>6} turn {turn:>2}: ttft {s.time_to_first_token * 1000:6.1f} ms, prompt "
                f"{s.prompt_tokens} tokens, evaluated {s.prompt_tokens_evaluated}",
                flush=True,
            )
    return out


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    from app.engine.llama_cpp_engine import LlamaCppEngine, supports_gpu_offload
    from app.engine.types import LoadParams
    from app.settings import Sampling

    model = model_path(args.model)
    flash = supports_gpu_offload()  # Hearth's default: flash attention with a GPU, off on the CPU
    repeats = 1 if args.quick else 3
    print(f"model {model.name}, {args.threads} threads; {machine()}")
    from app.engine.local import fast_kernels_work
    from bench._common import safe_mode_memory

    # In this process: where llama.cpp's fast CPU kernels fault, safe mode (tried in an engine
    # process first), or the fault would end the benchmark without its figure.
    safe = not fast_kernels_work(str(model), safe_mode_memory(), args.threads)
    engine = LlamaCppEngine()
    engine.load(str(model), LoadParams(context_length=8192, threads=args.threads, safe_cpu=safe))
    print(f"CPU mode: {'safe' if safe else 'fast'}")
    sampling = Sampling(temperature=0, max_tokens=32 if args.quick else 48, repeat_penalty=1.0)
    runs: dict[str, list[dict[int, tuple[float, int, int]]]] = {w: [] for w in WAYS}
    for _ in range(repeats):
        for way in WAYS:  # interleaved, so drift of the machine touches all three alike
            runs[way].append(conversation(engine, way, sampling))
    engine.unload()

    ratios: dict[str, float] = {}
    for way in WAYS:
        ttft = {t: median([r[t][0] for r in runs[way]]) for t in TURNS}
        ratios[way] = ttft[20] / ttft[1]
        print(
            f"\n{way}: median ttft "
            + ", ".join(f"turn {t} {v * 1000:.1f} ms" for t, v in ttft.items())
        )
        # The reference: llama.cpp's own llama-bench evaluating the same number of new tokens at
        # the same depth (the KV cache holding the earlier turns), measured now on this machine.
        own: dict[int, float] = {}
        for t in TURNS:
            n_new = round(median([r[t][2] for r in runs[way]]))
            depth = round(median([r[t][1] for r in runs[way]])) - n_new
            if n_new == 0:
                print(f"  turn {t:>2}: nothing left to evaluate at depth {depth}")
                continue
            own[t] = llama_bench_pp_seconds(model, args.threads, n_new, depth, flash)
            print(
                f"  turn {t:>2}: llama-bench pp{n_new} at depth {depth}: {own[t] * 1000:6.1f} ms "
                f"(hearth / llama.cpp {ttft[t] / own[t]:.2f})",
                flush=True,
            )
        if 1 in own and 20 in own:
            print(f"  llama.cpp's own turn 20 / turn 1 for the same work: {own[20] / own[1]:.3f}")
        print(f"  ttft turn 20 / turn 1: {ratios[way]:.3f}")
    print("\nttft turn 20 / turn 1: " + ", ".join(f"{w} {r:.2f}" for w, r in ratios.items()))
    figure("ttft turn 20 / turn 1, typed", ratios["typed"], "<= 1.2")


if __name__ == "__main__":
    main()

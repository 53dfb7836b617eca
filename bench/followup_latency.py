"""Time to first token at turns 1, 5, 10 and 20 of one growing conversation (same new message size)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import (
    figure,
    llama_bench_pp_seconds,
    machine,
    median,
    model_path,
    parser,
)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    from app.engine.llama_cpp_engine import LlamaCppEngine, supports_gpu_offload
    from app.engine.types import LoadParams
    from app.settings import Sampling

    model = model_path(args.model)
    flash = supports_gpu_offload()  # Hearth's default: flash attention with a GPU, off on the CPU
    turns = [1, 5, 10, 20]
    repeats = 1 if args.quick else 3
    print(f"model {model.name}, {args.threads} threads; {machine()}")
    engine = LlamaCppEngine()
    engine.load(str(model), LoadParams(context_length=8192, threads=args.threads))
    sampling = Sampling(temperature=0, max_tokens=48, repeat_penalty=1.0)
    ttft: dict[int, list[float]] = {t: [] for t in turns}
    evaluated: dict[int, list[int]] = {t: [] for t in turns}
    prompt: dict[int, list[int]] = {t: [] for t in turns}
    for _ in range(repeats):
        history: list[dict[str, str]] = []
        # Warm up on another conversation so turn 1 is not a cold first decode.
        list(engine.chat([{"role": "user", "content": "Hello!"}], sampling, threading.Event()))
        # As the app does while the user reads and types: a new chat has what precedes its
        # first message evaluated ahead, and each reply the template's markup after it.
        engine.prepare([])
        for turn in range(1, max(turns) + 1):
            history.append(
                {
                    "role": "user",
                    "content": f"Question {turn}: name one interesting fact about the number {turn * 7}.",
                }
            )
            reply = engine.chat(history, sampling, threading.Event())  # type: ignore[arg-type]
            text = "".join(reply)
            history.append({"role": "assistant", "content": text})
            engine.prepare(history)  # type: ignore[arg-type]
            if turn in ttft:
                ttft[turn].append(reply.stats.time_to_first_token)
                evaluated[turn].append(reply.stats.prompt_tokens_evaluated)
                prompt[turn].append(reply.stats.prompt_tokens)
                print(
                    f"turn {turn:>2}: ttft {reply.stats.time_to_first_token * 1000:6.1f} ms, prompt "
                    f"{reply.stats.prompt_tokens} tokens, evaluated {reply.stats.prompt_tokens_evaluated}",
                    flush=True,
                )
    engine.unload()
    med = {t: median(v) for t, v in ttft.items()}
    print("median ttft (ms): " + ", ".join(f"turn {t}: {v * 1000:.1f}" for t, v in med.items()))
    # The reference: llama.cpp's own llama-bench evaluating the same number of new tokens at the
    # same depth (KV cache already holding the earlier turns), measured now on this machine.
    own: dict[int, float] = {}
    for t in turns:
        n_new = round(median(evaluated[t]))
        depth = round(median(prompt[t])) - n_new
        own[t] = llama_bench_pp_seconds(model, args.threads, n_new, depth, flash)
        print(
            f"turn {t:>2}: hearth {med[t] * 1000:6.1f} ms; llama-bench pp{n_new} at depth {depth}: "
            f"{own[t] * 1000:6.1f} ms (hearth / llama.cpp {med[t] / own[t]:.2f})",
            flush=True,
        )
    print(f"llama.cpp's own turn 20 / turn 1 for the same work: {own[20] / own[1]:.3f}")
    figure("ttft turn 20 / turn 1", med[20] / med[1], "<= 1.2")


if __name__ == "__main__":
    main()

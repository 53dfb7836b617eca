"""The API server as a client sees it: ``hearth serve`` streaming to the official ``openai`` client,
against llama.cpp's own speed (llama-bench) and llama-cpp-python's own server, in one run.

Figures: generation tokens/s through Hearth's server ÷ llama-bench tg (same model, threads, depth)
and ÷ llama-cpp-python's server; time to first token of turn 20 of a conversation resent whole
÷ turn 1 (the KV prefix reused, as in the window); and a remote engine (Hearth's RemoteEngine
reading ``hearth serve`` on loopback) ÷ the local engine process. Runs are interleaved.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import (
    bench_engine,
    choose_cpu_mode,
    deadline,
    fail,
    figure,
    llama_bench_tg,
    machine,
    median,
    model_path,
    parser,
    safe_cpu,
    temp_dir,
)

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm."
START_SECONDS = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    import urllib.request

    deadline_at = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline_at:
        if proc.poll() is not None:
            fail(f"{what} ended at start with exit code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    fail(f"{what} did not answer within {START_SECONDS} s")


def start_hearth(model: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    """`hearth serve` in a home of its own, with this run's threads and the model in its library."""
    from app.paths import get_paths

    home = temp_dir() / "serve-home"
    saved = os.environ.get("HEARTH_HOME")
    os.environ["HEARTH_HOME"] = str(home)
    try:
        paths = get_paths()
    finally:
        if saved is None:
            del os.environ["HEARTH_HOME"]
        else:
            os.environ["HEARTH_HOME"] = saved
    paths.ensure()
    # The same sampling as every contender (greedy, no repeat penalty): a RemoteEngine sends only
    # OpenAI's standard fields, so the server's own settings decide the rest.
    settings = {
        "threads": threads,
        "context_length": 4096,
        "extra_models": [str(model)],
        "sampling": {"temperature": 0, "repeat_penalty": 1.0},
    }
    paths.settings_file.write_text(json.dumps(settings))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--idle-minutes", "0"],
        cwd=ROOT,
        env={**os.environ, "HEARTH_HOME": str(home)},
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    wait_until_up(url, proc, "hearth serve")
    return proc, url


def start_llama_cpp_server(model: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    wait_until_up(url, proc, "llama-cpp-python's server")
    return proc, url


def stream(client: Any, model: str, messages: list[dict[str, str]], n_gen: int) -> dict[str, float]:
    """One streamed reply: tokens/s on arrival, time to first token, tokens, the text."""
    started = time.perf_counter()
    first = last = 0.0
    chunks = 0
    tokens = 0
    parts: list[str] = []
    for chunk in client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=n_gen,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"repeat_penalty": 1.0},
    ):
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            parts.append(chunk.choices[0].delta.content)
            chunks += 1
            if chunks == 1:
                first = last
    tokens = tokens or chunks  # a server without usage in streams: one chunk per token
    rate = (tokens - 1) / (last - first) if tokens > 8 and last > first else -1.0
    return {"tps": rate, "ttft": first - started, "tokens": tokens, "text": "".join(parts)}  # type: ignore[dict-item]


def model_id(client: Any, model: Path) -> str:
    """The server's id for ``model`` (Hearth's: its name in lower case; llama-cpp-python's: the
    path it was started with)."""
    ids = [m.id for m in client.models.list().data]
    for wanted in (model.stem.lower(), str(model)):
        if wanted in ids:
            return wanted
    return ids[0]


def conversation_ttft(client: Any, model: str, turns: int, series: int) -> list[float]:
    """Time to first token of each turn of one conversation, resent whole every time. Its own
    system prompt makes its first turn share nothing with earlier requests but a few tokens."""
    messages = [{"role": "system", "content": f"Conversation {series}: a helpful assistant."}]
    ttfts = []
    for n in range(turns):
        question = f"Tell me fact number {n + 1} about lighthouses (series {series})."
        messages.append({"role": "user", "content": question})
        reply = stream(client, model, messages, 48)
        ttfts.append(reply["ttft"])
        messages.append({"role": "assistant", "content": str(reply["text"])})
    return ttfts


def on_arrival(engine: Any, sampling: Any) -> float:
    """Tokens/s of one reply as its reader sees them come: from its first piece to its last."""
    first = last = 0.0
    reply = engine.chat([{"role": "user", "content": PROMPT}], sampling, threading.Event())
    for _ in reply:
        last = time.perf_counter()
        first = first or last
    tokens = reply.stats.generated_tokens
    return (tokens - 1) / (last - first) if tokens > 8 and last > first else -1.0


def remote_vs_local(
    url: str, model: Path, name: str, threads: int, n_gen: int, remote_first: bool
) -> tuple[float, float]:
    """Tokens/s through the window's engine contract, read the same way: RemoteEngine on
    `hearth serve` (on loopback), and the local engine process."""
    from app.engine.remote import RemoteEngine
    from app.engine.types import LoadParams
    from app.settings import Sampling

    sampling = Sampling(temperature=0, max_tokens=n_gen, repeat_penalty=1.0)
    remote = RemoteEngine(url, name="bench")
    remote.load(name, LoadParams())
    local = bench_engine(safe_cpu())
    local.load(str(model), LoadParams(context_length=4096, threads=threads, safe_cpu=safe_cpu()))
    try:
        if remote_first:
            remote_tps = on_arrival(remote, sampling)
            local_tps = on_arrival(local, sampling)
        else:
            local_tps = on_arrival(local, sampling)
            remote_tps = on_arrival(remote, sampling)
    finally:
        remote.close()
        local.close()
    return remote_tps, local_tps


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    model = model_path(args.model)
    n_gen = 64 if args.quick else 128
    runs = 3 if args.quick else 7
    turns = 8 if args.quick else 20
    print(f"model {model.name}, {args.threads} threads, {n_gen} tokens, {runs} interleaved runs")
    print(machine())
    import openai

    from app.engine.llama_cpp_engine import supports_gpu_offload

    flash = supports_gpu_offload()
    choose_cpu_mode(model, args.threads, flash)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with deadline(2 * START_SECONDS, "the servers did not start"):
            hearth_proc, hearth_url = start_hearth(model, args.threads)
            procs.append(hearth_proc)
            other_proc, other_url = start_llama_cpp_server(model, args.threads)
            procs.append(other_proc)
        hearth = openai.OpenAI(base_url=hearth_url, api_key="none", max_retries=0, timeout=300)
        other = openai.OpenAI(base_url=other_url, api_key="none", max_retries=0, timeout=300)
        hearth_id, other_id = model_id(hearth, model), model_id(other, model)
        messages = [{"role": "user", "content": PROMPT}]
        with deadline(600, "a reply took too long"):
            stream(hearth, hearth_id, messages, 8)  # loads the model
            stream(other, other_id, messages, 8)
            # llama-bench generates at the depth of the prompt the servers read.
            first = hearth.chat.completions.create(model=hearth_id, messages=messages, max_tokens=1)
            prompt_tokens = first.usage.prompt_tokens if first.usage else 0
            ratios_bench: list[float] = []
            ratios_other: list[float] = []
            rows = []
            for i in range(runs):
                order = ["hearth", "bench", "other"] if i % 2 == 0 else ["other", "bench", "hearth"]
                got: dict[str, float] = {}
                for who in order:
                    if who == "hearth":
                        got[who] = float(stream(hearth, hearth_id, messages, n_gen)["tps"])
                    elif who == "other":
                        got[who] = float(stream(other, other_id, messages, n_gen)["tps"])
                    else:
                        got[who] = llama_bench_tg(model, args.threads, n_gen, flash, prompt_tokens)
                if min(got.values()) <= 0:
                    fail(f"a contender generated too few tokens in run {i + 1}: {got}")
                rows.append(got)
                ratios_bench.append(got["hearth"] / got["bench"])
                ratios_other.append(got["hearth"] / got["other"])
                print(
                    f"run {i + 1}: hearth serve {got['hearth']:.1f}, llama-bench {got['bench']:.1f}, "
                    f"llama-cpp-python server {got['other']:.1f} tokens/s"
                )
        with deadline(1200, "the conversations took too long"):
            # Medians per turn over conversations of their own (a first message never sent before).
            hearth_runs, other_runs = [], []
            for series in range(2 if args.quick else 3):
                hearth_runs.append(conversation_ttft(hearth, hearth_id, turns, series))
                other_runs.append(conversation_ttft(other, other_id, turns, series))
            ttft = [median(t) for t in zip(*hearth_runs, strict=True)]
            other_ttft = [median(t) for t in zip(*other_runs, strict=True)]
        print(
            f"time to first token, turn 1 → {turns}: hearth serve {ttft[0] * 1000:.0f} → "
            f"{ttft[-1] * 1000:.0f} ms; llama-cpp-python server {other_ttft[0] * 1000:.0f} → "
            f"{other_ttft[-1] * 1000:.0f} ms"
        )
        with deadline(600, "the remote engine comparison took too long"):
            remote_rates, local_rates = [], []
            for i in range(runs):
                remote_tps, local_tps = remote_vs_local(
                    hearth_url, model, hearth_id, args.threads, n_gen, remote_first=i % 2 == 0
                )
                remote_rates.append(remote_tps)
                local_rates.append(local_tps)
            print(
                f"remote engine via hearth serve {median(remote_rates):.1f} tokens/s, local engine "
                f"{median(local_rates):.1f} tokens/s"
            )
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"CPU mode: {'safe' if safe_cpu() else 'fast'}")
    figure("hearth serve ÷ llama-cpp-python's server, generation", median(ratios_other), "> 1")
    figure(f"turn {turns} ÷ turn 1 time to first token (hearth serve)", ttft[-1] / ttft[0], "≤ 1.3")
    figure(
        "remote engine on hearth serve ÷ local engine, generation",
        median([r / loc for r, loc in zip(remote_rates, local_rates, strict=True)]),
        "≥ 0.95",
    )
    figure("hearth serve ÷ llama-bench, generation", median(ratios_bench), "≥ 0.95")


if __name__ == "__main__":
    main()

"""What one llama.cpp build costs against others on this machine: prompt and generation tokens/s.

Each ``--build NAME=FOLDER[:safe]`` is a llama-cpp-python installed into FOLDER (``pip install
--no-deps --target FOLDER <wheel>``), or ``installed`` for the test environment's own; ``:safe``
runs it in safe CPU mode (where its fast kernels fault). Every round runs each build in a process
of its own with FOLDER first on PYTHONPATH (Hearth's engine process and llama-bench inherit it),
builds in alternating order, and measures what bench/safe_mode.py measures: llama-bench pp128 and
tg64, and a reply of Hearth's engine process (prompt and generation). Medians, and medians of
each round's ratios to the first build, because this machine drifts between runs.

    .venv/bin/python bench/cpu_builds.py --build portable=/tmp/portable-lib \\
        --build native=installed:safe --build amx=/tmp/amxlib
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import fail, figure, machine, median, model_path, parser

ROOT = Path(__file__).resolve().parents[1]
FIGURES = (
    "llama-bench pp128",
    "llama-bench tg64",
    "hearth engine prompt",
    "hearth engine generation",
)


def one(model: Path, threads: int, safe: bool, run: int) -> None:
    """Measure the llama_cpp this process imports; print one JSON line."""
    import logging

    import llama_cpp

    from app.engine.process import ProcessEngine
    from app.engine.types import LoadParams
    from bench.safe_mode import engine_speeds, llama_bench_speeds, new_engine

    logging.getLogger("app.engine").setLevel(logging.CRITICAL)
    pp, tg = llama_bench_speeds(model, threads, False, 128, 64, not safe)
    with tempfile.TemporaryDirectory() as folder:
        engine = new_engine(Path(folder))
        assert isinstance(engine, ProcessEngine)
        engine.load(str(model), LoadParams(context_length=4096, threads=threads, safe_cpu=safe))
        try:
            prompt, gen = engine_speeds(engine, 2 * run + safe, 64)
            loaded = engine.loaded
            if loaded is None or loaded.safe_cpu != safe:
                fail("the fast CPU kernels crash here: add :safe to this build")
        finally:
            engine.close()
    lib = Path(llama_cpp.__file__).parent
    print(json.dumps({"lib": str(lib), "speeds": [pp, tg, prompt, gen]}), flush=True)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--build", action="append", default=[], help="NAME=FOLDER[:safe]")
    p.add_argument("--one", help=argparse.SUPPRESS)  # one build's round, in a process of its own
    args = p.parse_args()
    model = model_path(args.model)
    if args.one is not None:
        safe, run = args.one.split(",")
        one(model, args.threads, safe == "1", int(run))
        return
    builds: list[tuple[str, str, bool]] = []
    for spec in args.build:
        name, _, rest = spec.partition("=")
        folder, _, mode = rest.partition(":")
        if not name or not folder or mode not in ("", "safe"):
            fail(f"--build {spec!r}: expected NAME=FOLDER[:safe]")
        if folder != "installed" and not (Path(folder) / "llama_cpp").is_dir():
            fail(f"--build {spec!r}: no llama_cpp in {folder}")
        builds.append((name, folder, mode == "safe"))
    if len(builds) < 2:
        fail("name at least two builds to compare")
    runs = 3 if args.quick else 7
    print(f"model {model.name}, {args.threads} threads, {runs} interleaved rounds; {machine()}")
    results: dict[str, list[list[float]]] = {name: [] for name, _, _ in builds}
    for i in range(runs):
        for name, folder, safe in builds if i % 2 == 0 else builds[::-1]:
            env = dict(os.environ)
            if folder != "installed":
                env["PYTHONPATH"] = os.pathsep.join(
                    x for x in (folder, env.get("PYTHONPATH", "")) if x
                )
            command = [sys.executable, __file__, "--threads", str(args.threads)]
            command += ["--one", f"{int(safe)},{i}"] + (
                ["--model", args.model] if args.model else []
            )
            out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
            if out.returncode != 0:
                fail(f"build {name}: {(out.stderr.strip().splitlines() or ['no output'])[-1]}")
            line = json.loads(out.stdout.strip().splitlines()[-1])
            results[name].append(line["speeds"])
            shown = ", ".join(f"{f} {v:.1f}" for f, v in zip(FIGURES, line["speeds"], strict=True))
            print(f"round {i + 1}, {name} ({line['lib']}): {shown}", flush=True)

    first = builds[0][0]
    print()
    for k, what in enumerate(FIGURES):
        parts = [f"{name} {median([r[k] for r in results[name]]):.1f}" for name in results]
        ratios = [
            f"{name} / {first} "
            f"{median([a[k] / b[k] for a, b in zip(results[name], results[first], strict=True)]):.3f}"
            for name in results
            if name != first
        ]
        print(f"{what} tokens/s: " + ", ".join(parts) + "; " + ", ".join(ratios))
    second = builds[1][0]
    figure(
        f"{first} / {second} generation tokens/s (hearth engine)",
        median([a[3] / b[3] for a, b in zip(results[first], results[second], strict=True)]),
        ">= 0.9",
    )


if __name__ == "__main__":
    main()

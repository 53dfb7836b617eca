"""Listing 50 GGUF files of various sizes: milliseconds per model, cold (no header cache) and warm."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import figure, machine, median, parser


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    from tests.gguf_factory import write_tiny_model

    print(machine())
    with tempfile.TemporaryDirectory() as home:
        os.environ["HEARTH_HOME"] = home
        from app.context import AppContext

        ctx = AppContext.open()
        for i in range(50):
            folder = ctx.paths.models_dir / f"owner{i % 7}" / f"repo{i}"
            folder.mkdir(parents=True, exist_ok=True)
            # Different sizes and vocabularies: n_ctx only changes metadata, seed the weights.
            write_tiny_model(folder / f"model-{i}.gguf", seed=i, n_ctx=512 + 64 * i)
        cold, warm = [], []
        for _ in range(3 if args.quick else 5):
            ctx.paths.gguf_cache_file.unlink(missing_ok=True)
            fresh = AppContext.open()
            started = time.perf_counter()
            models = fresh.library.scan()
            cold.append((time.perf_counter() - started) / len(models))
            started = time.perf_counter()
            fresh.library.scan()
            warm.append((time.perf_counter() - started) / len(models))
        print(f"{len(models)} models listed (50 generated + the starter model)")
    print(
        f"cold: {median(cold) * 1000:.2f} ms per model; warm: {median(warm) * 1000:.2f} ms per model"
    )
    figure("library scan, cold (ms per model)", median(cold) * 1000, "<= 50")


if __name__ == "__main__":
    main()

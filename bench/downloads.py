"""Download throughput of Hearth's downloader vs curl, same file, same loopback server.

Hearth's figure is the whole pull: Range request, writing, sha256 (hashed while it downloads) and
the atomic rename into the models folder. curl writes the same bytes to a file and verifies nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import figure, machine, median, parser

SERVE = """
import sys, time
from pathlib import Path
from tests.fake_hub import FakeHub
hub = FakeHub()
hub.add("bench/big", {"big-Q4_K_M.gguf": Path(sys.argv[1]).read_bytes()})
print(hub.url, flush=True)
time.sleep(3600)
"""


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    from app.downloads import Downloader
    from app.hub import choose, list_models

    size = (50 if args.quick else 200) * 1024 * 1024
    print(f"{size / 2**20:.0f} MiB over loopback; {machine()}")
    ours, curls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        blob = root / "blob.bin"
        blob.write_bytes(os.urandom(size))
        # The server runs in its own process, so neither client shares its interpreter.
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(blob)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        os.environ["HF_ENDPOINT"] = base
        url = f"{base}/bench/big/resolve/main/big-Q4_K_M.gguf"
        model = choose(list_models("bench/big"), "")
        for i in range(5):
            models_dir, partial_dir = root / f"m{i}", root / f"p{i}"
            started = time.perf_counter()
            Downloader().pull(model, models_dir, partial_dir)
            ours.append(size / (time.perf_counter() - started))
            out = root / f"curl{i}.bin"
            started = time.perf_counter()
            subprocess.run(["curl", "-sSL", "-o", str(out), url], check=True)
            curls.append(size / (time.perf_counter() - started))
            print(
                f"run {i + 1}: hearth {ours[-1] / 1e6:.0f} MB/s, curl {curls[-1] / 1e6:.0f} MB/s",
                flush=True,
            )
            out.unlink()
            for p in models_dir.rglob("*.gguf"):
                p.unlink()
        server.terminate()
        server.wait()
    print(f"median: hearth {median(ours) / 1e6:.0f} MB/s, curl {median(curls) / 1e6:.0f} MB/s")
    figure("download throughput hearth / curl", median(ours) / median(curls), ">= 0.95")


if __name__ == "__main__":
    main()

"""Bad model files, as many as we can make: a fuzzer over the header reader, and a corpus of
crafted files given to `hearth models add` and `hearth chat -m` — 0 crashes, 0 hangs, 0
tracebacks, every one a plain message or a working model."""

from __future__ import annotations

import contextlib
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.model_file import InvalidModelFile, read_header_prefix, read_model_file
from tests.cli_process import ROOT
from tests.gguf_factory import write_tiny_model

FUZZ_EXAMPLES = 400
HEADER_BYTES = 4096  # the key/value header and tensor table of the tiny model lie in here


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_model(tmp_path_factory.mktemp("fuzz") / "tiny.gguf").read_bytes()


def _mutated(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for at, value in edits:
        out[at % min(HEADER_BYTES, len(out))] = value
    return bytes(out[:cut] if cut is not None else out)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=2000,
    derandomize=True,  # the same cases every run: a failure here is reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=12),
    cut=st.one_of(st.none(), st.integers(0, 1 << 20)),
)
def test_fuzzed_headers_are_read_or_refused_with_a_reason(
    original: bytes, tmp_path: Path, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = _mutated(original, edits, cut)
    path = tmp_path / "fuzzed.gguf"
    path.write_bytes(data)
    started = time.monotonic()
    reason = ""
    try:
        info = read_model_file(path)
    except InvalidModelFile as e:
        reason = str(e)
    else:
        assert info.size_bytes == len(data)
    assert reason or cut is None or cut >= len(original)  # a cut file is never taken
    with contextlib.suppress(InvalidModelFile):
        read_header_prefix(data[:HEADER_BYTES])  # what the Hub's header peek reads
    assert time.monotonic() - started < 1.0


def _corpus(original: bytes, folder: Path) -> list[Path]:
    """Crafted files: counts and lengths set to extremes, types out of range, truncations at
    every part of the header, and seeded random damage, plus the hyperparameters llama.cpp
    asserts on."""
    rng = random.Random(1234)
    files: dict[str, bytes] = {}
    for name, at, raw in [
        ("tensor-count-max", 8, struct.pack("<Q", 2**64 - 1)),
        ("tensor-count-0", 8, struct.pack("<Q", 0)),
        ("kv-count-0", 16, struct.pack("<Q", 0)),
        ("kv-count-max", 16, struct.pack("<Q", 2**64 - 1)),
        ("key-length-0", 24, struct.pack("<Q", 0)),
        ("key-length-max", 24, struct.pack("<Q", 2**64 - 1)),
        ("version-1", 4, struct.pack("<I", 1)),
        ("version-0", 4, struct.pack("<I", 0)),
    ]:
        files[name] = original[:at] + raw + original[at + len(raw) :]
    for cut in (4, 8, 16, 24, 31, 64, 100, 500, 1000, 2000, 3000, 4095, len(original) // 3):
        files[f"cut-{cut}"] = original[:cut]
    for i in range(40):
        files[f"random-{i}"] = _mutated(
            original, [(rng.randrange(HEADER_BYTES), rng.randrange(256)) for _ in range(6)], None
        )
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        path = folder / f"{name}.gguf"
        path.write_bytes(data)
        paths.append(path)
    for name, header in [
        ("layers-0", {"block_count": 0}),
        ("layers-2-31", {"block_count": 2**31}),
        ("eps-nan", {"rms_eps": float("nan")}),
        ("experts-2-31", {"expert_count": 2**31}),
    ]:
        paths.append(write_tiny_model(folder / f"{name}.gguf", **header))  # type: ignore[arg-type]
    return paths


@pytest.mark.slow
def test_hostile_corpus_gives_no_crash_no_hang_no_traceback(
    original: bytes, tmp_path: Path
) -> None:
    corpus = _corpus(original, tmp_path / "corpus")
    outcomes: dict[str, list[str]] = {"crash": [], "hang": [], "traceback": []}
    ran = refused = 0
    for path in corpus:
        for args in (
            ["models", "add", str(path)],
            ["chat", "-m", str(path), "--max-tokens", "2", "hi"],
        ):
            try:
                result = subprocess.run(
                    [sys.executable, "-m", "app", *args],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    cwd=ROOT,
                )
            except subprocess.TimeoutExpired:
                outcomes["hang"].append(f"{path.name} {args[0]}")
                continue
            if result.returncode < 0 or result.returncode > 128:
                outcomes["crash"].append(f"{path.name} {args[0]}: {result.returncode}")
            if "Traceback" in result.stderr:
                outcomes["traceback"].append(f"{path.name} {args[0]}")
            if result.returncode == 0:
                ran += 1
            else:
                refused += 1
                assert result.stderr.startswith("hearth: "), (path.name, result.stderr[-500:])
    print(f"corpus: {len(corpus)} files × 2 commands: {ran} ran, {refused} refused, {outcomes}")
    assert outcomes == {"crash": [], "hang": [], "traceback": []}

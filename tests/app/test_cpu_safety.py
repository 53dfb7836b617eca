"""Safe CPU mode: a fault of llama.cpp's CPU kernels in the engine process is survived, the
reply still comes, the choice is remembered for this processor and llama.cpp build, and the user
is told once. Faults are injected in the engine child (HEARTH_INJECT_CPU_FAULT) or sent to it."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.cpu_safety import (
    DOES_NOT_FIT,
    SAFE_MODE_NOTICE,
    SafeModeMemory,
    amx_build_fault,
    is_cpu_fault,
    machine_key,
    safe_mode_notice,
)
from app.engine.process import CRASHED, CRASHED_SWITCHING, ProcessEngine
from app.engine.types import EngineError, LoadParams
from app.settings import Sampling
from tests.cli_process import hearth

PARAMS = LoadParams(context_length=512, threads=2)
HELLO = [{"role": "user", "content": "hello there"}]


def greedy(n: int = 8) -> Sampling:
    return Sampling(max_tokens=n, temperature=0, repeat_penalty=1.0)


@pytest.fixture
def memory(tmp_path: Path) -> SafeModeMemory:
    return SafeModeMemory(tmp_path / "safe-cpu-mode.json")


@pytest.fixture
def make_engine(memory: SafeModeMemory) -> Iterator[type[ProcessEngine]]:
    made: list[ProcessEngine] = []

    def make() -> ProcessEngine:
        e = ProcessEngine(safe_mode=memory)
        made.append(e)
        return e

    yield make  # type: ignore[misc]
    for e in made:
        e.close()


def inject(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Make engine processes started from now on fault like llama.cpp's AMX kernels."""
    monkeypatch.setenv("HEARTH_INJECT_CPU_FAULT", where)


def test_cpu_faults_are_told_apart_from_other_ends() -> None:
    assert is_cpu_fault(-signal.SIGILL)
    assert is_cpu_fault(-signal.SIGSEGV)
    assert is_cpu_fault(-signal.SIGBUS)
    assert is_cpu_fault(0xC000001D)  # Windows: illegal instruction
    assert not is_cpu_fault(-signal.SIGKILL)  # killed: not the code's fault
    assert not is_cpu_fault(-signal.SIGABRT)  # an assertion in llama.cpp: a bad file, not the CPU
    assert not is_cpu_fault(0)
    assert not is_cpu_fault(1)
    assert not is_cpu_fault(None)


def test_memory_is_per_machine_and_build(tmp_path: Path) -> None:
    path = tmp_path / "safe.json"
    here = SafeModeMemory(path)
    assert here.key == machine_key()
    assert not here.needed()
    here.remember("test")
    assert SafeModeMemory(path).needed()  # a later process reads it
    assert not SafeModeMemory(path, key="another processor or build").needed()
    SafeModeMemory(path).forget()
    assert not SafeModeMemory(path).needed()


def test_memory_survives_a_damaged_or_unwritable_file(tmp_path: Path) -> None:
    path = tmp_path / "safe.json"
    path.write_text("{ not json")
    assert not SafeModeMemory(path).needed()
    path.write_text(json.dumps({"version": 99, "machines": {machine_key(): {}}}))
    assert not SafeModeMemory(path).needed()  # a newer format is not guessed at
    blocked = SafeModeMemory(tmp_path / "a-file" / "safe.json")
    (tmp_path / "a-file").write_text("not a folder")
    blocked.remember("test")  # logged, not raised
    assert blocked.needed()  # for the rest of this session


def test_fault_in_the_fast_kernels_falls_back_and_is_remembered(
    make_engine: type[ProcessEngine],
    memory: SafeModeMemory,
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inject(monkeypatch, "evaluate")
    engine = make_engine()
    info = engine.load(str(tiny_model), PARAMS)
    assert not info.safe_cpu  # nothing known yet: the fast kernels are tried
    first_child = engine._proc.pid
    reply = engine.chat(HELLO, greedy(), threading.Event())
    text = "".join(reply)
    assert text  # the reply arrived, from a new engine process in safe mode
    assert engine._proc.pid != first_child
    assert engine.loaded is not None
    assert engine.loaded.safe_cpu
    assert reply.stats.generated_tokens > 0
    assert reply.stats.notice == safe_mode_notice()
    assert memory.needed()
    # Said once: the next reply has no notice.
    again = engine.chat(HELLO, greedy(), threading.Event())
    assert "".join(again) == text  # greedy, same kernels: the same words
    assert again.stats.notice == ""

    # A later start on this machine loads safe at once: no crash, no notice.
    later = make_engine()
    info = later.load(str(tiny_model), PARAMS)
    assert info.safe_cpu
    assert info.notice == ""
    child = later._proc.pid
    reply = later.chat(HELLO, greedy(), threading.Event())
    assert "".join(reply) == text
    assert later._proc.pid == child
    assert reply.stats.notice == ""


def test_machines_without_the_fault_stay_fast(
    make_engine: type[ProcessEngine], memory: SafeModeMemory, tiny_model: Path
) -> None:
    engine = make_engine()
    assert not engine.load(str(tiny_model), PARAMS).safe_cpu
    reply = engine.chat(HELLO, greedy(), threading.Event())
    assert "".join(reply)
    assert reply.stats.notice == ""
    assert not memory.needed()
    assert not memory.path.exists()


def test_fault_while_loading_falls_back(
    make_engine: type[ProcessEngine],
    memory: SafeModeMemory,
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inject(monkeypatch, "load")
    engine = make_engine()
    info = engine.load(str(tiny_model), PARAMS)
    assert info.safe_cpu
    assert info.notice.startswith(SAFE_MODE_NOTICE)
    assert memory.needed()
    reply = engine.chat(HELLO, greedy(), threading.Event())
    assert "".join(reply)
    assert reply.stats.notice == ""  # already said when the model loaded


def test_fault_that_persists_in_safe_mode_says_the_build_does_not_fit(
    make_engine: type[ProcessEngine],
    memory: SafeModeMemory,
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inject(monkeypatch, "evaluate:always")
    engine = make_engine()
    engine.load(str(tiny_model), PARAMS)
    reply = engine.chat(HELLO, greedy(), threading.Event())
    with pytest.raises(EngineError) as failed:
        list(reply)
    assert str(failed.value) == DOES_NOT_FIT
    assert "pip install --force-reinstall --no-cache-dir llama-cpp-python" in DOES_NOT_FIT
    assert not memory.needed()  # safe mode did not help: nothing to remember
    # The next message tries again (a crash is never the end of the app) and says the same.
    with pytest.raises(EngineError, match="does not work on this processor"):
        list(engine.chat(HELLO, greedy(), threading.Event()))


def test_fault_after_words_were_shown_switches_for_the_next_message(
    make_engine: type[ProcessEngine], memory: SafeModeMemory, tiny_model: Path
) -> None:
    engine = make_engine()
    engine.load(str(tiny_model), PARAMS)
    reply = engine.chat(
        HELLO, Sampling(max_tokens=2000, temperature=0, repeat_penalty=1.0), threading.Event()
    )
    shown: list[str] = []

    def read_and_fault() -> None:
        for text in reply:
            if not shown:
                os.kill(engine._proc.pid, signal.SIGILL)  # as a kernel would, mid-reply
            shown.append(text)

    with pytest.raises(EngineError) as failed:
        read_and_fault()
    assert shown
    assert str(failed.value) == CRASHED_SWITCHING
    assert not memory.needed()  # not yet known to help
    reply = engine.chat(HELLO, greedy(), threading.Event())
    assert "".join(reply)
    assert engine.loaded is not None
    assert engine.loaded.safe_cpu
    assert reply.stats.notice == safe_mode_notice()
    assert memory.needed()


def test_a_kill_is_not_taken_for_a_cpu_fault(
    make_engine: type[ProcessEngine], memory: SafeModeMemory, tiny_model: Path
) -> None:
    engine = make_engine()
    engine.load(str(tiny_model), PARAMS)
    os.kill(engine._proc.pid, signal.SIGKILL)
    engine._proc.join(5)
    with pytest.raises(EngineError) as failed:
        list(engine.chat(HELLO, greedy(), threading.Event()))
    assert str(failed.value) == CRASHED
    reply = engine.chat(HELLO, greedy(), threading.Event())
    assert "".join(reply)
    assert engine.loaded is not None
    assert not engine.loaded.safe_cpu
    assert not memory.needed()


def test_a_reply_left_unread_does_not_leak_into_the_next(
    make_engine: type[ProcessEngine], tiny_model: Path
) -> None:
    engine = make_engine()
    engine.load(str(tiny_model), PARAMS)
    expected = "".join(engine.chat(HELLO, greedy(), threading.Event()))
    long = engine.chat(
        [{"role": "user", "content": "go on"}],
        Sampling(max_tokens=2000, temperature=0, repeat_penalty=1.0),
        threading.Event(),
    )
    next(iter(long))
    long.deltas.close()  # the reader leaves (Ctrl+C, a closed pipe)
    assert long.stats.stop_reason == "cancelled"
    assert "".join(engine.chat(HELLO, greedy(), threading.Event())) == expected


def test_cli_falls_back_once_and_remembers(tiny_model: Path) -> None:
    env = {**os.environ, "HEARTH_INJECT_CPU_FAULT": "evaluate"}
    args = ("chat", "-m", str(tiny_model), "--max-tokens", "6", "--temperature", "0", "hi")
    first = hearth(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip()
    assert f"note: {SAFE_MODE_NOTICE}" in first.stderr
    assert "Traceback" not in first.stderr
    second = hearth(*args, env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert "note:" not in second.stderr


def test_cli_fault_that_persists_is_one_line_and_keeps_the_conversation(
    tiny_model: Path,
) -> None:
    env = {**os.environ, "HEARTH_INJECT_CPU_FAULT": "evaluate:always"}
    result = hearth("chat", "-m", str(tiny_model), "name three colors", env=env)
    assert result.returncode == 1
    assert result.stderr == f"hearth: {DOES_NOT_FIT}\n"
    exported = hearth("chats", "export", env=env)
    [conversation] = json.loads(exported.stdout)["conversations"]
    user, assistant = conversation["messages"]
    assert user["content"] == "name three colors"
    assert assistant["status"] == "error"
    assert assistant["error"] == DOES_NOT_FIT


def test_a_file_that_aborts_llama_cpp_is_not_loaded_again_until_it_changes(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An abort while loading (a GGML_ASSERT on a bad file) is the file's fault, not the CPU's:
    no safe-mode retry, and no crash at every later message and start."""
    import shutil

    from app.context import AppContext
    from app.engine.crashed_models import CrashedModels

    ctx = AppContext.open()
    model = ctx.paths.models_dir / "acme" / "Bad" / "bad.gguf"
    model.parent.mkdir(parents=True)
    shutil.copyfile(tiny_model, model)
    record = CrashedModels(ctx.paths.crashed_models_file)
    memory = SafeModeMemory(tmp_path / "safe.json")
    inject(monkeypatch, "load:abort")
    engine = ProcessEngine(safe_mode=memory, crashed=record)
    try:
        with pytest.raises(EngineError, match=r"crashed while loading bad\.gguf") as failed:
            engine.load(str(model), PARAMS)
        assert not memory.needed()  # not taken for a CPU fault
        assert engine._proc is None
        with pytest.raises(EngineError) as again:  # refused at once: no process started
            engine.load(str(model), PARAMS)
        assert str(again.value) == str(failed.value)
        assert engine._proc is None
        listed = {m.name: m for m in ctx.library.scan()}["bad"]
        assert not listed.usable
        assert listed.error == str(failed.value)
        # A changed file (a new download, a repaired copy) gets its chance again.
        monkeypatch.delenv("HEARTH_INJECT_CPU_FAULT")
        shutil.copyfile(tiny_model, model)
        os.utime(model, ns=(1, 1))
        assert engine.load(str(model), PARAMS).path == str(model)
        assert {m.name: m for m in ctx.library.scan()}["bad"].usable
    finally:
        engine.close()


def test_an_engine_process_that_exits_while_loading_does_not_blame_the_file(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit status 1 is Python failing in the child (a broken install, a script without a main
    guard re-run by multiprocessing): the model was marked as crashing llama.cpp for good."""
    from app.engine.crashed_models import CrashedModels

    record = CrashedModels(tmp_path / "crashed.json")
    memory = SafeModeMemory(tmp_path / "safe.json")
    inject(monkeypatch, "load:exit")
    engine = ProcessEngine(safe_mode=memory, crashed=record)
    try:
        with pytest.raises(EngineError, match=r"ended while loading .*exit code 1.*engine\.log"):
            engine.load(str(tiny_model), PARAMS)
        assert record.reason(str(tiny_model)) is None
        assert not memory.needed()
        monkeypatch.delenv("HEARTH_INJECT_CPU_FAULT")
        assert engine.load(str(tiny_model), PARAMS).path == str(tiny_model)
    finally:
        engine.close()


def test_the_known_amx_cause_is_named_only_where_it_applies(tmp_path: Path) -> None:
    """An AMX processor and a GCC-built llama.cpp with AMX kernels: the notice names the GCC
    miscompile and the rebuild; any piece missing, it says nothing it does not know."""
    lib = tmp_path / "lib"
    lib.mkdir()
    binary = b"\x7fELF...ggml_backend_amx_buffer_type...GCC: (Debian 12.2.0-14+deb12u1) 12.2.0\0"
    (lib / "libggml-cpu.so.0.25.3").write_bytes(binary)
    (lib / "libggml-cpu.so").symlink_to("libggml-cpu.so.0.25.3")
    amx = "fpu sse avx512f amx_bf16 amx_tile amx_int8"
    cause = amx_build_fault(amx, lib)
    assert "GCC 12.2.0" in cause
    assert "Troubleshooting" in cause
    assert amx_build_fault("fpu sse avx2", lib) == ""  # no AMX on this processor
    (lib / "libggml-cpu.so.0.25.3").write_bytes(binary.replace(b"amx_buffer", b"cpu_buffer"))
    assert amx_build_fault(amx, lib) == ""  # built without AMX kernels
    (lib / "libggml-cpu.so.0.25.3").write_bytes(binary.replace(b"GCC:", b"clang"))
    assert amx_build_fault(amx, lib) == ""  # another compiler
    assert amx_build_fault(amx, tmp_path / "missing") == ""
    assert safe_mode_notice().startswith(SAFE_MODE_NOTICE)

"""The remote engine against a scripted fake OpenAI server and against llama-cpp-python's own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.engine.remote import RemoteEngine, is_loopback, normalise_url
from app.engine.types import ChatMessage, EngineError, LoadParams, ReplyRules
from app.settings import Sampling
from tests.cli_process import ROOT, hearth

HELLO: list[ChatMessage] = [{"role": "user", "content": "hi"}]
PARAMS = LoadParams(context_length=2048)


def _chunk(text: str | None = None, finish: str | None = None, chat: bool = True) -> bytes:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta"] = {} if text is None else {"content": text}
    else:
        choice["text"] = text or ""
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


ERRORS: dict[str, tuple[int, object]] = {
    "401": (401, {"error": {"message": "Invalid API key", "type": "invalid_request_error"}}),
    "403": (403, {"error": {"message": "Forbidden", "type": "invalid_request_error"}}),
    "404": (404, {"error": {"message": "The model `tiny` does not exist", "type": "x"}}),
    "500": (500, {"error": {"message": "the GPU\ncaught fire", "type": "server_error"}}),
    "no-route": (404, {"detail": "Not Found"}),  # FastAPI's 404 for a path it does not serve
}


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 whose next answers are scripted.

    ``script`` is one of: ``stream`` (two pieces, then usage), ``no-usage`` (pieces counted,
    finish "length"), ``drip`` (a piece every 20 ms for seconds), ``stall`` (headers, then
    nothing), ``silent`` (not even headers), ``cut`` (a piece, then the connection drops
    mid-chunk), ``error-event`` (a piece, then an error in the stream), or one of ``ERRORS``.
    """

    def __init__(self) -> None:
        self.script = "stream"
        self.models: list[str] | int = ["tiny", "other"]  # a status: /v1/models answers it
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.client_gone = threading.Event()  # a write failed: the client closed the stream
        self.release = threading.Event()  # ends stalls
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, dict(self.headers), None))
                if isinstance(fake.models, int):
                    fake._json(self, fake.models, {"error": {"message": "Not here"}})
                else:
                    data = [{"id": m, "object": "model"} for m in fake.models]
                    fake._json(self, 200, {"object": "list", "data": data})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(("POST", self.path, dict(self.headers), body))
                fake._answer(self, chat=self.path.endswith("/chat/completions"))

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, *args: Any) -> None:
                pass  # a client that hung up, as the tests make it do

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def last_body(self) -> Any:
        return self.requests[-1][3]

    def _json(self, h: BaseHTTPRequestHandler, status: int, data: object) -> None:
        body = json.dumps(data).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _answer(self, h: BaseHTTPRequestHandler, chat: bool) -> None:
        script = self.script
        if script in ERRORS:
            status, body = ERRORS[script]
            self._json(h, status, body)
            return
        if script == "silent":
            self.release.wait(10)
            h.close_connection = True  # an engine that waits for more fails instead of hanging
            return
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()

        def send(data: bytes) -> None:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        try:
            if script == "stall":
                self.release.wait(10)
                h.close_connection = True
                return
            send(_chunk("Hello", chat=chat))
            if script == "cut":
                h.wfile.write(b"40\r\ndata: {")  # a chunk that never ends
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            if script == "error-event":
                send(b'data: {"error": {"message": "out of memory"}}\n\n')
            elif script == "drip":
                for i in range(300):
                    time.sleep(0.02)
                    send(_chunk(f" {i}", chat=chat))
            else:
                send(b": keep-alive\n\n")
                send(_chunk(" world", chat=chat))
                send(_chunk(None, "length" if script == "no-usage" else "stop", chat=chat))
                if script == "stream":
                    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
                    send(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
                send(b"data: [DONE]\n\n")
            send(b"")
        except OSError:  # BrokenPipeError, ConnectionResetError
            self.client_gone.set()


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    f = FakeOpenAI()
    yield f
    f.close()


@pytest.fixture
def engine(fake: FakeOpenAI) -> Iterator[RemoteEngine]:
    e = RemoteEngine(fake.url)
    e.load("tiny", PARAMS)
    yield e
    e.close()


def _stop_later(action: Callable[[], object], after: float) -> threading.Thread:
    """``action`` from another thread, as the GUI's Stop button does it."""

    def run() -> None:
        time.sleep(after)
        action()

    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize(
    ("given", "root"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1"),
        (" localhost:11434/v1 ", "http://localhost:11434/v1"),
        ("https://api.example.com/openai/v1", "https://api.example.com/openai/v1"),
        ("https://me:secret@box.lan/v1?x=1", "https://box.lan/v1"),
        ("http://[::1]:8080", "http://[::1]:8080/v1"),
    ],
)
def test_normalise_url(given: str, root: str) -> None:
    assert normalise_url(given) == root


@pytest.mark.parametrize("bad", ["", "ftp://host/v1", "http://", "http://host:port/v1"])
def test_not_an_address(bad: str) -> None:
    with pytest.raises(EngineError, match="is not a server address"):
        RemoteEngine(bad)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8080/v1", True),
        ("http://127.8.9.10/v1", True),
        ("http://[::1]:8080", True),
        ("http://localhost:11434/v1", True),
        ("localhost:8080", True),
        ("http://[::ffff:127.0.0.1]:80", True),
        ("http://192.168.1.5:8080/v1", False),
        ("http://0.0.0.0:8080", False),
        ("https://api.openai.com/v1", False),
        ("http://localhost.example.com", False),
    ],
)
def test_is_loopback(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


def test_load_checks_the_servers_models(fake: FakeOpenAI) -> None:
    engine = RemoteEngine(fake.url, name="the box")
    assert engine.models() == ["tiny", "other"]
    loaded = engine.load("other", PARAMS)
    assert (loaded.path, loaded.name, loaded.context_length) == ("other", "other", 2048)
    assert (loaded.template_source, loaded.gpu_layers) == ("model", 0)
    assert engine.loaded == loaded
    with pytest.raises(EngineError, match=r"^The box has no model named nope\. It has: tiny, "):
        engine.load("nope", PARAMS)
    assert engine.loaded is None  # as with model files: a failed load leaves none loaded
    with pytest.raises(EngineError, match="Name one of the box's models: tiny, other"):
        engine.load("", PARAMS)
    fake.models = ["only"]
    assert engine.load("", PARAMS).path == "only"  # the server's one model
    engine.unload()
    assert engine.loaded is None
    with pytest.raises(EngineError, match="No model is loaded"):
        engine.chat(HELLO, Sampling(), threading.Event())


@pytest.mark.parametrize("models", [[], 404])
def test_a_server_that_lists_no_models_is_taken_at_its_word(
    fake: FakeOpenAI, models: list[str] | int
) -> None:
    fake.models = models
    engine = RemoteEngine(fake.url)
    assert engine.models() == []
    with pytest.raises(EngineError, match=r"^The server does not list its models: name the one"):
        engine.load("", PARAMS)
    assert engine.load("whatever", PARAMS).path == "whatever"
    assert "".join(engine.chat(HELLO, Sampling(), threading.Event())) == "Hello world"
    assert fake.last_body["model"] == "whatever"


def test_chat_streams_with_the_servers_usage(engine: RemoteEngine, fake: FakeOpenAI) -> None:
    reply = engine.chat(HELLO, Sampling(temperature=0.2, max_tokens=50), threading.Event())
    assert list(reply) == ["Hello", " world"]
    stats = reply.stats
    assert (stats.prompt_tokens, stats.generated_tokens, stats.stop_reason) == (5, 2, "eos")
    assert 0 < stats.time_to_first_token < 5
    method, path, headers, body = fake.requests[-1]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert "Authorization" not in headers
    assert body == {
        "model": "tiny",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "top_p": 0.95,
        "max_tokens": 50,
    }  # no seed for -1, no stop, no response_format, nothing outside OpenAI's API


def test_rules_seed_and_api_key_are_sent(fake: FakeOpenAI) -> None:
    engine = RemoteEngine(fake.url + "/", api_key="sk-test")
    engine.load("tiny", PARAMS)
    rules = ReplyRules(stop=("\n\n", "END"), response_format={"type": "json_object"})
    list(engine.chat(HELLO, Sampling(seed=7), threading.Event(), rules))
    _, _, headers, body = fake.requests[-1]
    assert headers["Authorization"] == "Bearer sk-test"
    assert all(h[2]["Authorization"] == "Bearer sk-test" for h in fake.requests)  # GET too
    assert body["seed"] == 7
    assert body["stop"] == ["\n\n", "END"]
    assert body["response_format"] == {"type": "json_object"}


def test_complete_uses_completions(engine: RemoteEngine, fake: FakeOpenAI) -> None:
    fake.script = "no-usage"
    reply = engine.complete("Once upon", Sampling(max_tokens=2), threading.Event())
    assert "".join(reply) == "Hello world"
    assert fake.requests[-1][1] == "/v1/completions"
    assert fake.last_body["prompt"] == "Once upon"
    assert "messages" not in fake.last_body
    # Without usage the pieces are counted.
    assert (reply.stats.generated_tokens, reply.stats.stop_reason) == (2, "length")
    assert reply.stats.prompt_tokens == 0


def test_interrupt_from_another_thread_ends_a_streaming_reply(
    engine: RemoteEngine, fake: FakeOpenAI
) -> None:
    fake.script = "drip"
    reply = engine.chat(HELLO, Sampling(), threading.Event())
    pieces = iter(reply)
    next(pieces)
    stopped = time.monotonic()
    _stop_later(engine.interrupt, 0).join()
    rest = list(pieces)
    assert time.monotonic() - stopped < 0.5
    assert len(rest) <= 2
    assert reply.stats.stop_reason == "cancelled"
    assert reply.stats.generated_tokens == 1 + len(rest)
    assert fake.client_gone.wait(5)  # the request ended at the server too
    fake.script = "stream"  # the next reply is not cancelled by the last one's Stop
    again = engine.chat(HELLO, Sampling(), threading.Event())
    assert "".join(again) == "Hello world"
    assert again.stats.stop_reason == "eos"


@pytest.mark.parametrize("script", ["stall", "silent"])
@pytest.mark.parametrize("how", ["interrupt", "cancel"])
def test_stop_ends_a_stalled_reply_at_once(
    engine: RemoteEngine, fake: FakeOpenAI, script: str, how: str
) -> None:
    """Headers then nothing (stall), or not even headers (silent): Stop still ends it."""
    fake.script = script
    cancel = threading.Event()
    reply = engine.chat(HELLO, Sampling(), cancel)
    stopper = _stop_later(engine.interrupt if how == "interrupt" else cancel.set, 0.3)
    started = time.monotonic()
    assert list(reply) == []
    stopper.join()
    assert time.monotonic() - started < 0.3 + 0.5
    assert reply.stats.stop_reason == "cancelled"


def test_closing_the_reply_ends_the_request(engine: RemoteEngine, fake: FakeOpenAI) -> None:
    fake.script = "drip"
    reply = engine.chat(HELLO, Sampling(), threading.Event())
    pieces = iter(reply)
    assert next(pieces) == "Hello"
    reply.close()
    assert reply.stats.stop_reason == "cancelled"
    assert fake.client_gone.wait(5)


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        ("sk-wrong", "401", r"^The server refused the API key\.$"),
        ("sk-wrong", "403", r"^The server refused the API key\.$"),
        ("", "401", r"^The server asks for an API key\.$"),
        ("", "404", r"^The server has no model named tiny\.$"),
        ("", "500", r"^The server reported an error \(HTTP 500\): the GPU caught fire$"),
    ],
)
def test_http_errors_in_plain_words(fake: FakeOpenAI, key: str, status: str, message: str) -> None:
    engine = RemoteEngine(fake.url, api_key=key)
    engine.load("tiny", PARAMS)
    fake.script = status
    with pytest.raises(EngineError, match=message):
        list(engine.chat(HELLO, Sampling(), threading.Event()))


def test_models_refused_key(fake: FakeOpenAI) -> None:
    fake.models = 401
    with pytest.raises(EngineError, match="refused the API key"):
        RemoteEngine(fake.url, api_key="k").load("tiny", PARAMS)


def test_a_wrong_address_is_named(fake: FakeOpenAI) -> None:
    root = fake.url.removesuffix("/v1") + "/api"
    engine = RemoteEngine(root)
    fake.models = 404
    engine.load("tiny", PARAMS)  # accepted: a server need not list its models
    fake.script = "no-route"
    with pytest.raises(EngineError) as e:
        list(engine.chat(HELLO, Sampling(), threading.Event()))
    assert str(e.value) == (
        f"The server has nothing at {root}/chat/completions (HTTP 404): is {root} the address "
        "of its OpenAI-compatible API (often ending in /v1)?"
    )


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("cut", r"^The connection to the server was lost mid-reply\.$"),
        ("error-event", r"^The server reported an error: out of memory$"),
    ],
)
def test_a_reply_broken_off_keeps_its_text(
    engine: RemoteEngine, fake: FakeOpenAI, script: str, message: str
) -> None:
    fake.script = script
    got: list[str] = []
    with pytest.raises(EngineError, match=message):
        got.extend(engine.chat(HELLO, Sampling(), threading.Event()))
    assert got == ["Hello"]


def test_unreachable_server() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = RemoteEngine(f"http://127.0.0.1:{port}", name="my box")
    with pytest.raises(
        EngineError, match=rf"^Could not reach my box at http://127.0.0.1:{port}/v1"
    ):
        engine.load("tiny", PARAMS)


def test_offline_mode_allows_only_this_computer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = RemoteEngine("http://192.0.2.1:8080/v1")  # TEST-NET: never answers
    started = time.monotonic()
    with pytest.raises(EngineError, match=r"offline mode.*not to 192\.0\.2\.1"):
        engine.load("tiny", PARAMS)
    assert time.monotonic() - started < 1  # no connection was tried


# --- the command line


def test_cli_chat_with_a_remote_model(fake: FakeOpenAI, hearth_home: Path) -> None:
    env = {**os.environ, "HEARTH_REMOTE_API_KEY": "sk-env"}
    done = hearth("chat", "--remote", fake.url, "-m", "tiny", "hello there", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello world\n"
    assert fake.requests[-1][2]["Authorization"] == "Bearer sk-env"
    assert fake.last_body["messages"][-1] == {"role": "user", "content": "hello there"}
    exported = json.loads(hearth("chats", "export", env=env).stdout)["conversations"][0]
    assert exported["title"] == "hello there"
    assert exported["model"] == f"{fake.url}/models/tiny"  # which server, which model
    reply = exported["messages"][-1]
    assert (reply["role"], reply["content"], reply["status"]) == (
        "assistant",
        "Hello world",
        "complete",
    )
    assert reply["model"] == "tiny"
    # --api-key wins over the environment; a refused key is one line.
    fake.script = "401"
    refused = hearth("chat", "--remote", fake.url, "-m", "tiny", "--api-key", "sk-flag", "hi")
    assert refused.returncode == 1
    assert refused.stderr == "hearth: The server refused the API key.\n"
    assert fake.requests[-1][2]["Authorization"] == "Bearer sk-flag"


def test_cli_ctrl_c_stops_a_remote_reply(fake: FakeOpenAI) -> None:
    fake.script = "drip"
    command = [sys.executable, "-m", "app", "chat", "--remote", fake.url, "-m", "tiny", "go"]
    pipe = subprocess.PIPE
    with subprocess.Popen(command, stdout=pipe, stderr=pipe, cwd=ROOT) as chat:
        try:
            assert chat.stdout is not None
            assert chat.stdout.read(5) == b"Hello"
            chat.send_signal(signal.SIGINT)
            out, err = chat.communicate(timeout=30)
        finally:
            chat.kill()
    assert chat.returncode == 0, err
    assert out.endswith(b"\n")
    assert fake.client_gone.wait(5)  # the server stopped sending
    reply = json.loads(hearth("chats", "export").stdout)["conversations"][0]["messages"][-1]
    assert reply["status"] == "interrupted"
    assert reply["content"].startswith("Hello")


def test_cli_offline_refuses_a_server_elsewhere() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = hearth("chat", "--remote", "http://192.0.2.1:8080/v1", "-m", "x", "hi", env=env)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "offline mode" in done.stderr
    assert done.stdout == ""


# --- a server nobody here wrote


@pytest.mark.slow
def test_llama_cpp_pythons_server(llama_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, server = llama_server
    engine = RemoteEngine(url, name="llama-cpp-python")
    (model,) = engine.models()  # it lists the one model it serves, by its path
    engine.load(model, PARAMS)
    greedy = Sampling(temperature=0, max_tokens=16, seed=1)

    reply = engine.chat([{"role": "user", "content": "Say hello."}], greedy, threading.Event())
    assert "".join(reply).strip()
    assert reply.stats.stop_reason in ("eos", "length")
    assert 1 <= reply.stats.generated_tokens <= 16
    assert reply.stats.time_to_first_token > 0

    completion = engine.complete("The capital of France is", greedy, threading.Event())
    assert "".join(completion).strip()

    story = [{"role": "user", "content": "Tell me a very long story about a dragon."}]
    long = Sampling(temperature=0, max_tokens=1000, seed=1)
    reply = engine.chat(story, long, threading.Event())  # type: ignore[arg-type]
    pieces = iter(reply)
    next(pieces)
    stopped = time.monotonic()
    _stop_later(engine.interrupt, 0).join()
    rest = list(pieces)
    assert time.monotonic() - stopped < 0.5
    assert len(rest) <= 2
    assert reply.stats.stop_reason == "cancelled"

    # The server outlives the client's hang-up; then it dies mid-reply.
    reply = engine.chat(story, long, threading.Event())  # type: ignore[arg-type]
    pieces = iter(reply)
    got = [next(pieces), next(pieces)]
    server.kill()
    with pytest.raises(
        EngineError, match=r"^The connection to llama-cpp-python was lost mid-reply"
    ):
        got.extend(pieces)
    assert "".join(got).strip()

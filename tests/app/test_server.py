"""The API server, spoken to by the official ``openai`` client: on a scripted engine in this
process (fast), and as ``hearth serve`` with the starter model (slow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from app.chats.store import ChatStore
from app.engine.remote import RemoteEngine
from app.engine.shared import SharedEngine
from app.engine.types import EngineError, GenerationStats, LoadParams
from app.library import LibraryEntry
from app.model_file import read_model_file
from app.server.host import ModelHost, model_ids
from app.server.openai_api import read_chat
from app.server.run import ApiServer, ServerError, ServerOptions
from app.server.saving import SavedRequests
from app.settings import Sampling
from tests.cli_process import ROOT
from tests.fake_engine import FakeEngine

Serve = Callable[..., tuple[str, FakeEngine]]


@pytest.fixture
def serve(tiny_model: Path) -> Iterator[Serve]:
    """Start a server on a free loopback port over a FakeEngine; returns (base URL, engine)."""
    started: list[tuple[ApiServer, ModelHost]] = []

    def start(
        api_key: str = "",
        words: list[str] | None = None,
        delay: float = 0.0,
        saving: SavedRequests | None = None,
    ) -> tuple[str, FakeEngine]:
        fake = FakeEngine()
        if words is not None:
            fake.words = words
        fake.delay = delay
        entry = LibraryEntry(tiny_model, "file", read_model_file(tiny_model))
        host = ModelHost(
            SharedEngine(fake).seat("api"),
            lambda: [entry],
            lambda _path: LoadParams(context_length=512),
            saving=saving,
        )
        server = ApiServer(host, ServerOptions("127.0.0.1", 0, api_key), Sampling)
        server.start_thread()
        started.append((server, host))
        return server.options.url, fake

    yield start
    for server, host in started:
        server.stop()
        host.close()


_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()  # their pooled sockets, else a ResourceWarning fails the run


def client(url: str, key: str = "none", **kw: Any) -> openai.OpenAI:
    made = openai.OpenAI(base_url=url, api_key=key, max_retries=0, **kw)
    _clients.append(made)
    return made


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def test_model_ids_are_readable_and_distinct(tiny_model: Path, tmp_path: Path) -> None:
    other = tmp_path / "b" / tiny_model.name
    other.parent.mkdir()
    other.write_bytes(tiny_model.read_bytes())
    entries = [LibraryEntry(p, "file", read_model_file(p)) for p in (other, tiny_model)]
    ids = model_ids(entries)
    assert set(ids) == {"tiny-chat", "tiny-chat-2"}
    assert ids["tiny-chat"].path == min(tiny_model, other, key=str)


def test_models_and_a_whole_reply(serve: Serve) -> None:
    url, fake = serve()
    api = client(url)
    assert [m.id for m in api.models.list().data] == ["tiny-chat"]
    assert api.models.retrieve("tiny-chat").id == "tiny-chat"
    reply = api.chat.completions.create(
        model="tiny-chat",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ],
        max_tokens=7,
        temperature=0.2,
        seed=7,
        stop=["END"],
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == "".join(fake.words)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == len(fake.words)
    assert fake.calls[-1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    sampling, rules = fake.requests[-1]
    assert (sampling.max_tokens, sampling.temperature, sampling.seed) == (7, 0.2, 7)
    assert rules.stop == ("END",)


def test_streamed_reply_with_usage(serve: Serve) -> None:
    url, fake = serve()
    chunks = list(
        client(url).chat.completions.create(
            model="tiny-chat",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(fake.words)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 10 + len(fake.words)
    assert len({c.id for c in chunks}) == 1


def test_requests_are_saved_as_chats_only_when_asked(serve: Serve, tmp_path: Path) -> None:
    url, _ = serve()
    api = client(url)
    api.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "Hi"}])
    db = tmp_path / "chats.sqlite3"
    assert not db.exists()  # nothing saved by default

    url, fake = serve(saving=SavedRequests(db))
    api = client(url)
    first = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    reply = api.chat.completions.create(model="tiny-chat", messages=first)  # type: ignore[arg-type]
    text = reply.choices[0].message.content or ""
    follow_up = [
        *first,
        {"role": "assistant", "content": text},
        {"role": "user", "content": "More"},
    ]
    api.chat.completions.create(model="tiny-chat", messages=follow_up)  # type: ignore[arg-type]
    api.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "New"}])
    store = ChatStore(db)
    try:
        conversations = store.conversations()
        assert len(conversations) == 2  # the follow-up continued the first conversation
        first_saved = next(c for c in conversations if c.title == "API: Hi")
        assert first_saved.system_prompt == "Be brief."
        saved = store.messages(first_saved.id)
        assert [(m.role, m.content, m.status) for m in saved] == [
            ("user", "Hi", "complete"),
            ("assistant", "".join(fake.words), "complete"),
            ("user", "More", "complete"),
            ("assistant", "".join(fake.words), "complete"),
        ]
    finally:
        store.close()


def test_plain_completion(serve: Serve) -> None:
    url, _ = serve(words=["Paris", "."])
    reply = client(url).completions.create(model="tiny-chat", prompt="The capital", max_tokens=5)
    assert reply.object == "text_completion"
    assert reply.choices[0].text == "Paris."


def test_errors_in_openai_shape(serve: Serve) -> None:
    url, _ = serve()
    api = client(url)
    with pytest.raises(openai.NotFoundError) as missing:
        api.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="one choice"):
        api.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": "x"}], n=2
        )
    with pytest.raises(openai.BadRequestError, match="temperature"):
        api.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": "x"}], temperature=9
        )
    with pytest.raises(openai.BadRequestError, match="only text"):
        api.chat.completions.create(
            model="tiny-chat",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
        )
    with pytest.raises(openai.BadRequestError, match="role"):
        api.chat.completions.create(model="tiny-chat", messages=[{"role": "tool", "content": "x"}])  # type: ignore[list-item]
    headers = {"Content-Type": "application/json"}
    status, body = post(f"{url}/chat/completions", b"{not json", headers)
    assert status == 400
    assert "valid JSON" in body["error"]["message"]
    status, body = post(f"{url}/chat/completions", b"{}", {"Content-Type": "text/plain"})
    assert status == 415  # a web page's form post is refused without a CORS preflight


def test_oversized_body_is_refused(serve: Serve) -> None:
    url, fake = serve()
    huge = json.dumps(
        {"model": "tiny-chat", "messages": [{"role": "user", "content": "x" * (9 << 20)}]}
    ).encode()
    with pytest.raises(openai.APIStatusError) as refused:
        client(url).post("/chat/completions", body=json.loads(huge), cast_to=object)
    assert refused.value.status_code == 413
    assert fake.calls == []


def test_api_key_is_required_when_set(serve: Serve) -> None:
    url, _ = serve(api_key="s3cret")
    with pytest.raises(openai.AuthenticationError) as wrong:
        client(url, key="wrong").models.list()
    assert wrong.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    status, body = post(f"{url}/chat/completions", b"{}", {"Content-Type": "application/json"})
    assert status == 401
    assert "API key is required" in body["error"]["message"]
    assert [m.id for m in client(url, key="s3cret").models.list().data] == ["tiny-chat"]


def test_other_host_names_are_refused_on_loopback(serve: Serve) -> None:
    """A page whose DNS name was rebound to 127.0.0.1 still sends its own name."""
    url, _ = serve()
    request = urllib.request.Request(f"{url}/models", headers={"Host": "evil.example:8484"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    with refused.value:
        assert refused.value.code == 403


def test_listening_beyond_loopback_needs_a_key(tiny_model: Path) -> None:
    host = ModelHost(SharedEngine(FakeEngine()).seat("api"), list, lambda _path: LoadParams())
    try:
        with pytest.raises(ServerError, match="API key"):
            ApiServer(host, ServerOptions("0.0.0.0", 0), Sampling)
        ApiServer(host, ServerOptions("0.0.0.0", 0, api_key="k"), Sampling)  # allowed with one
    finally:
        host.close()


def test_two_clients_at_once_both_answered_in_turn(serve: Serve) -> None:
    url, fake = serve(delay=0.02)
    answers: dict[int, str] = {}

    def ask(n: int) -> None:
        reply = client(url).chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": f"q{n}"}]
        )
        answers[n] = reply.choices[0].message.content or ""

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert answers == {0: "".join(fake.words), 1: "".join(fake.words)}


def test_a_client_that_leaves_frees_the_engine(serve: Serve) -> None:
    url, fake = serve(words=[f" w{i}" for i in range(400)], delay=0.05)
    api = client(url)
    stream = api.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "long"}], stream=True
    )
    for n, _ in enumerate(stream):
        if n == 3:
            break
    stream.close()
    fake.words, fake.delay = ["ok"], 0.0
    started = time.monotonic()
    reply = api.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "next"}]
    )
    assert reply.choices[0].message.content == "ok"
    assert time.monotonic() - started < 1.0


# --- `hearth serve` with the starter model, as a user runs it -------------------------------


@pytest.fixture(scope="module")
def hearth_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("serve-home")
    env = {**os.environ, "HEARTH_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", "0", "--api-key", "k3y"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = ""
        deadline = time.monotonic() + 60
        while "Serving on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"hearth serve ended with {proc.returncode}")
        found = re.search(r"(http://\S+/v1)", line)
        assert found, line
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


STARTER = "smollm2-135m-instruct.q4_1"
HELLO = [{"role": "user", "content": "Name three colours."}]


@pytest.mark.slow
def test_serve_real_model_whole_and_streamed(hearth_serve: str) -> None:
    api = client(hearth_serve, key="k3y")
    assert STARTER in [m.id for m in api.models.list().data]
    whole = api.chat.completions.create(model=STARTER, messages=HELLO, max_tokens=12, temperature=0)  # type: ignore[arg-type]
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 12
    # Not compared with the whole reply's text: a prompt found in the KV cache is evaluated in
    # other batch sizes, which round differently, and greedy decoding can then part ways.
    chunks = list(
        api.chat.completions.create(
            model=STARTER,
            messages=HELLO,  # type: ignore[arg-type]
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == 12
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens > 0  # the same prompt again: reused
    with pytest.raises(openai.AuthenticationError):
        client(hearth_serve, key="wrong").models.list()


@pytest.mark.slow
def test_serve_real_model_stop_strings_and_seed(hearth_serve: str) -> None:
    api = client(hearth_serve, key="k3y")
    cut = api.chat.completions.create(
        model=STARTER,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=40,
        stop=[" ", "\n"],
    )
    assert cut.choices[0].finish_reason == "stop"
    assert not set(cut.choices[0].message.content or "") & {" ", "\n"}
    assert cut.usage is not None
    assert cut.usage.completion_tokens < 40
    seeded = [
        api.chat.completions.create(
            model=STARTER,
            messages=HELLO,
            max_tokens=20,
            temperature=1.0,
            seed=1234,  # type: ignore[arg-type]
        )
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert seeded[0] == seeded[1]


@pytest.mark.slow
def test_serve_real_model_json_schema(hearth_serve: str) -> None:
    schema = {
        "type": "object",
        # Bounded, so that the grammar itself brings the object to its end within the limit.
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    api = client(hearth_serve, key="k3y")
    reply = api.chat.completions.create(
        model=STARTER,
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        max_tokens=120,
        # Greedy: sampled at random, one run in seven wrote a raw newline into the bounded
        # "name" (llama-cpp-python's json_schema_to_gbnf lets a control character through
        # there; noted in the issue, not yet mended), which no JSON reader accepts.
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema},
        },
    )
    assert reply.choices[0].finish_reason == "stop"  # the grammar ended it, not the limit
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)
    anything = api.chat.completions.create(
        model=STARTER,
        messages=[{"role": "user", "content": "A JSON list of two fruits."}],
        max_tokens=200,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert anything.choices[0].finish_reason == "stop"
    json.loads(anything.choices[0].message.content or "")


@pytest.mark.slow
def test_hearth_as_the_remote_engine_of_hearth(hearth_serve: str) -> None:
    """Another Hearth's server is the first kind of connection: the RemoteEngine on it."""
    engine = RemoteEngine(hearth_serve, api_key="k3y", name="Desktop")
    assert STARTER in engine.models()
    engine.load(STARTER, LoadParams())
    reply = engine.chat(HELLO, Sampling(max_tokens=16, temperature=0), threading.Event())  # type: ignore[arg-type]
    assert "".join(reply).strip()
    assert reply.stats.generated_tokens == 16
    assert reply.stats.stop_reason == "length"
    alone = reply.stats.time_to_first_token  # the reference: this machine may be busy
    story = [{"role": "user", "content": "Tell me a very long story about a dragon."}]
    reply = engine.chat(story, Sampling(max_tokens=800), threading.Event())  # type: ignore[arg-type]
    pieces = iter(reply)
    next(pieces)
    engine.interrupt()
    assert len(list(pieces)) <= 2
    assert reply.stats.stop_reason == "cancelled"
    # The server's engine is free again at once.
    again = engine.chat(HELLO, Sampling(max_tokens=4), threading.Event())  # type: ignore[arg-type]
    assert "".join(again)
    # Not behind the rest of the 800-token story (seconds of decoding): about as quick as the
    # first reply (under 1 s on a quiet machine).
    assert again.stats.time_to_first_token < 3 * alone + 1.0
    engine.close()
    with pytest.raises(EngineError, match=r"refused the API key|asks for an API key"):
        RemoteEngine(hearth_serve, name="Desktop").models()


def test_a_model_no_request_used_for_the_idle_time_is_unloaded(tiny_model: Path) -> None:
    fake = FakeEngine()
    entry = LibraryEntry(tiny_model, "file", read_model_file(tiny_model))
    host = ModelHost(
        SharedEngine(fake).seat("api"),
        lambda: [entry],
        lambda _path: LoadParams(),
        idle_seconds=0.5,
    )
    try:
        request = read_chat(
            {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}]}, Sampling(), 64
        )
        model = host.find("tiny-chat")
        last = list(host.reply(request, model, threading.Event()))[-1]
        assert isinstance(last, GenerationStats)
        assert last.generated_tokens == 7
        assert fake.loaded is not None
        deadline = time.monotonic() + 5
        while fake.loaded is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fake.loaded is None
        assert host.seat.loaded is None
        # The next request loads it again.
        list(host.reply(request, model, threading.Event()))
        assert fake.loads == [str(tiny_model), str(tiny_model)]
    finally:
        host.close()


@pytest.mark.slow
def test_serve_real_model_two_clients_and_one_that_leaves(hearth_serve: str) -> None:
    """With the starter model: two clients at once are both answered (in turn), and a client
    that disconnects mid-stream frees the engine for the next request within a second."""
    answers: dict[int, str] = {}

    def ask(n: int) -> None:
        api = client(hearth_serve, key="k3y")
        reply = api.chat.completions.create(
            model=STARTER,
            messages=[{"role": "user", "content": f"Say a word about the number {n}."}],
            max_tokens=24,
        )
        answers[n] = reply.choices[0].message.content or ""

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(answers) == [0, 1]
    assert all(text.strip() for text in answers.values())

    api = client(hearth_serve, key="k3y")

    def first_words() -> float:
        """Seconds to the first words of a short reply."""
        started = time.monotonic()
        for chunk in api.chat.completions.create(
            model=STARTER,
            messages=HELLO,
            max_tokens=4,
            stream=True,  # type: ignore[arg-type]
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                return time.monotonic() - started
        raise AssertionError("no words came")

    alone = first_words()  # the reference, measured now: this machine may be busy
    stream = api.chat.completions.create(
        model=STARTER,
        messages=[{"role": "user", "content": "Tell me a very long story about a dragon."}],
        max_tokens=2000,
        stream=True,
    )
    for n, _ in enumerate(stream):
        if n == 5:
            break
    stream.close()  # the client leaves mid-reply
    # Not queued behind the abandoned 2,000-token story (tens of seconds of decoding): about as
    # quick as the same request with nothing before it (1.0 s on a quiet machine).
    assert first_words() < 3 * alone + 1.0

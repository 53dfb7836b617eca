"""Hub search, model pages, the fit estimate, the token and offline mode (against the fake Hub)."""

from __future__ import annotations

from pathlib import Path

import pytest
from keyring.backend import KeyringBackend

from app import secrets
from app.hub import (
    HubError,
    OfflineError,
    model_card,
    model_details,
    remote_header,
    search_page,
    set_offline,
    whoami,
)
from app.hub.fit import KvShape, Machine, Verdict, estimate
from app.hub.recommended import recommended
from app.model_file import read_model_file
from tests.fake_hub import FakeHub

GB = 1000**3


@pytest.fixture
def hub(fake_hub: FakeHub) -> FakeHub:
    return fake_hub


def test_search_sorts_and_pages_with_link_headers(hub: FakeHub) -> None:
    for i in range(5):
        hub.add(f"acme/model-{i}-GGUF", {"m-Q4_0.gguf": b"x"}, downloads=i * 100, likes=10 - i)
    first = search_page("model", sort="downloads", limit=2)
    assert [r.repo_id for r in first.results] == ["acme/model-4-GGUF", "acme/model-3-GGUF"]
    assert first.next_url
    second = search_page(next_url=first.next_url)
    third = search_page(next_url=second.next_url)
    assert [r.repo_id for r in second.results + third.results] == [
        "acme/model-2-GGUF",
        "acme/model-1-GGUF",
        "acme/model-0-GGUF",
    ]
    assert third.next_url is None
    by_likes = search_page("model", sort="likes", limit=1).results
    assert by_likes[0].repo_id == "acme/model-0-GGUF"
    [query] = [q for _m, p, q in hub.requests[:1]] or [""]
    assert query == ""  # search requests send no Range


def test_search_filters_by_parameter_count_and_shows_gguf_facts(hub: FakeHub) -> None:
    hub.add("a/small-GGUF", {"s.gguf": b"x"}, parameters=500_000_000, architecture="qwen2")
    hub.add("a/mid-GGUF", {"m.gguf": b"x"}, parameters=7_000_000_000)
    hub.add("a/big-GGUF", {"b.gguf": b"x"}, parameters=70_000_000_000)
    assert [r.repo_id for r in search_page(size="small").results] == ["a/small-GGUF"]
    assert [r.repo_id for r in search_page(size="medium").results] == ["a/mid-GGUF"]
    assert [r.repo_id for r in search_page(size="huge").results] == ["a/big-GGUF"]
    [small] = search_page("small").results
    assert (small.parameters, small.architecture, small.context_length) == (
        500_000_000,
        "qwen2",
        2048,
    )


def test_model_details_card_and_header(hub: FakeHub, tiny_model: Path) -> None:
    data = tiny_model.read_bytes()
    hub.add(
        "acme/Tiny-GGUF",
        {
            "tiny-Q4_K_M.gguf": data,
            "tiny-Q8_0-00001-of-00002.gguf": data[:100],
            "tiny-Q8_0-00002-of-00002.gguf": data[100:],
            "mmproj-tiny-f16.gguf": b"x",
        },
        license="mit",
        card="---\nlicense: mit\n---\n# Tiny\n\n![logo](https://example.com/logo.png)\n",
    )
    details = model_details("acme/Tiny-GGUF")
    assert details.license == "mit"
    assert not details.gated
    assert [(m.quant, len(m.files)) for m in details.models] == [("Q4_K_M", 1), ("Q8_0", 2)]
    assert model_card("acme/Tiny-GGUF").startswith("# Tiny")  # front matter dropped

    hub.requests.clear()
    meta = remote_header(details.models[0])
    info = read_model_file(tiny_model)
    kv = KvShape.from_metadata(meta)
    assert kv is not None
    assert (kv.layers, kv.kv_heads) == (info.block_count, info.head_count_kv)
    assert kv.head_dim == info.embedding_length // info.head_count
    ranges = [r for _m, p, r in hub.requests if p.startswith("/cdn/")]
    assert ranges == ["bytes=0-1048575"]  # one bounded request, never the whole file

    hub.repos["acme/Tiny-GGUF"].gated = True
    assert model_details("acme/Tiny-GGUF").gated
    assert model_card("acme/Tiny-GGUF") == ""  # behind the gate, like the files


def test_missing_card_is_empty_and_missing_repo_is_explained(hub: FakeHub) -> None:
    hub.add("acme/no-card", {"x-Q4_0.gguf": b"x"})
    assert model_card("acme/no-card") == ""
    with pytest.raises(HubError, match="not found"):
        model_details("acme/nope")


def test_hub_errors_in_plain_words(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(HubError, match="cannot be reached"):
        search_page("x")


def test_fit_estimate() -> None:
    kv = KvShape(layers=32, kv_heads=8, head_dim=128)  # Llama-3-8B: 128 KiB per token
    assert kv.bytes_per_token() == 131072
    laptop = Machine(ram_available=16 * GB, ram_total=32 * GB)
    fit = estimate(int(4.9 * GB), 8192, laptop, kv)
    assert fit.verdict is Verdict.FITS
    assert not fit.on_gpu
    assert fit.needed == int(4.9 * GB) + 8192 * 131072 + 300_000_000
    assert "8,192 tokens × 32 layers × 8 KV heads × 128" in fit.explanation
    assert "RAM 16.0 GB free" in fit.explanation
    assert estimate(int(12.5 * GB), 8192, laptop, kv).verdict is Verdict.TIGHT
    assert estimate(int(16 * GB), 8192, laptop, kv).verdict is Verdict.NO

    gpu = Machine(8 * GB, 16 * GB, vram_free=12 * GB, gpu="RTX 4070")
    on_gpu = estimate(int(4.9 * GB), 8192, gpu, kv)
    assert on_gpu.on_gpu
    assert on_gpu.verdict is Verdict.FITS
    assert "RTX 4070" in on_gpu.explanation
    split = estimate(int(17 * GB), 8192, gpu, kv)  # too big for the GPU alone: GPU + RAM
    assert not split.on_gpu
    assert split.verdict is Verdict.TIGHT

    guessed = estimate(int(4.9 * GB), 8192, laptop, None, parameters=8_000_000_000)
    assert guessed.needed == fit.needed
    assert "guessed" in guessed.explanation


def test_whoami(hub: FakeHub) -> None:
    assert whoami(hub.token) == "tester"
    with pytest.raises(HubError, match="refused"):
        whoami("hf_wrong")


class _MemoryKeyring(KeyringBackend):
    """A keyring backend that works, kept in memory."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, user: str) -> str | None:
        return self.store.get((service, user))

    def set_password(self, service: str, user: str, password: str) -> None:
        self.store[(service, user)] = password

    def delete_password(self, service: str, user: str) -> None:
        del self.store[(service, user)]


def test_token_goes_to_the_keyring_or_stays_in_memory(
    monkeypatch: pytest.MonkeyPatch, hearth_home: Path, tmp_path: Path
) -> None:
    import keyring
    import keyring.backends.fail

    monkeypatch.delenv("HF_TOKEN", raising=False)
    previous = keyring.get_keyring()
    try:
        keyring.set_keyring(keyring.backends.fail.Keyring())
        assert secrets.set_token("hf_session") is secrets.Stored.SESSION
        assert secrets.get_token() == "hf_session"
        secrets.delete_token()
        assert secrets.get_token() is None

        memory = _MemoryKeyring()
        keyring.set_keyring(memory)
        assert secrets.set_token("hf_kept") is secrets.Stored.KEYRING
        assert memory.store == {(secrets.SERVICE, secrets.ACCOUNT): "hf_kept"}
        assert secrets.get_token() == "hf_kept"
        # never written to a file
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert b"hf_kept" not in path.read_bytes()
                assert b"hf_session" not in path.read_bytes()
        secrets.delete_token()
        assert secrets.get_token() is None
    finally:
        keyring.set_keyring(previous)


def test_offline_switch_makes_zero_requests(hub: FakeHub, tiny_model: Path) -> None:
    hub.add("acme/Tiny-GGUF", {"tiny-Q4_K_M.gguf": tiny_model.read_bytes()})
    set_offline(True)
    hub.requests.clear()
    for call in (
        lambda: search_page("tiny"),
        lambda: model_details("acme/Tiny-GGUF"),
        lambda: model_card("acme/Tiny-GGUF"),
        lambda: whoami(hub.token),
    ):
        with pytest.raises(OfflineError, match="offline"):
            call()
    assert hub.requests == []


def test_recommended_list() -> None:
    models = recommended()
    assert len(models) >= 5
    for m in models:
        owner, _, name = m.repo_id.partition("/")
        assert owner
        assert name
        assert "/" not in name
        assert m.license in ("apache-2.0", "mit")
        assert m.why
        assert m.title
        assert m.size


def test_header_of_a_file_that_is_not_gguf(hub: FakeHub) -> None:
    hub.add("acme/fake", {"fake-Q4_0.gguf": b"<html>not a model</html>"})
    [remote] = model_details("acme/fake").models
    with pytest.raises(HubError, match="not a usable GGUF file"):
        remote_header(remote)


def test_gpu_build_is_found_from_library_files_without_loading_llama_cpp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.machinery

    from app.hub import fit

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libggml-cpu.so").touch()
    spec = importlib.machinery.ModuleSpec("llama_cpp", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(fit.importlib.util, "find_spec", lambda _name: spec)
    fit.gpu_backend.cache_clear()
    try:
        assert fit.gpu_backend() == ""
        (tmp_path / "lib" / "libggml-cuda.so").touch()
        fit.gpu_backend.cache_clear()
        assert fit.gpu_backend() == "cuda"
        monkeypatch.setattr("shutil.which", lambda _name: None)  # no nvidia-smi
        assert fit.this_machine().vram_free == 0  # then RAM is what is counted
    finally:
        fit.gpu_backend.cache_clear()


def test_no_keyring_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import keyring
    import keyring.backends.fail

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(secrets, "_said", set())
    previous = keyring.get_keyring()
    try:
        keyring.set_keyring(keyring.backends.fail.Keyring())
        with caplog.at_level("INFO", logger="app.secrets"):
            for _ in range(20):  # every Hub request asks
                assert secrets.get_token() is None
    finally:
        keyring.set_keyring(previous)
    assert sum("no usable keyring" in r.getMessage() for r in caplog.records) == 1

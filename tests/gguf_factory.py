"""GGUF test and benchmark models written with gguf.GGUFWriter (random weights, real shapes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


def add_llama_tensors(
    w: Any,
    rng: np.random.Generator,
    *,
    n_vocab: int,
    n_embd: int,
    n_layer: int,
    n_ff: int,
    n_head: int,
    n_kv: int,
    dtype: Any = np.float32,
    scale: float = 0.2,
) -> None:
    """Every tensor of a llama-architecture model, random but for all-ones norms."""

    def t(name: str, *shape: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape, dtype=np.float32) * scale).astype(dtype))

    kv_dim = n_embd // n_head * n_kv
    t("token_embd.weight", n_vocab, n_embd)
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        t(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        t(f"blk.{i}.attn_k.weight", kv_dim, n_embd)
        t(f"blk.{i}.attn_v.weight", kv_dim, n_embd)
        t(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    t("output.weight", n_vocab, n_embd)


def write_tiny_model(
    path: Path,
    *,
    chat_template: str | None = CHATML,
    n_ctx: int = 512,
    seed: int = 0,
    name: str = "Tiny Test Model",
    architecture: str = "llama",
    block_count: int | None = None,
    rms_eps: float = 1e-5,
    expert_count: int | None = None,
    control_tokens: tuple[str, ...] = (),
    eos_token: str | None = None,
    user_tokens: tuple[str, ...] = (),
) -> Path:
    """A real, loadable llama-architecture GGUF of ~1 MB: random weights, a byte-level vocab.

    ``block_count``, ``rms_eps`` and ``expert_count`` change only what the header says (the
    tensors stay those of 2 layers): hostile or broken headers for the validator.
    ``control_tokens`` go at the end of the vocabulary (a template's own markers); ``eos_token``
    names the end-of-sequence token (default ``<|im_end|>`` with a template, ``</s>`` without).
    ``user_tokens`` come last: markers a reply shows as text, as Qwen 3's ``<think>``.
    """
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
    tokens += control_tokens
    types += [gguf.TokenType.CONTROL] * len(control_tokens)
    tokens += user_tokens
    types += [gguf.TokenType.USER_DEFINED] * len(user_tokens)
    n_vocab = len(tokens)

    w = gguf.GGUFWriter(str(path), architecture)
    w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer if block_count is None else block_count)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(rms_eps)
    if expert_count is not None:
        w.add_expert_count(expert_count)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_license("apache-2.0")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(
        [0.0] * 5
        + [-1000.0] * 256
        + [-float(i) for i in range(len(words))]
        + [0.0] * (len(control_tokens) + len(user_tokens))
    )
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(
        tokens.index(eos_token) if eos_token is not None else 4 if chat_template else 2
    )
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)

    add_llama_tensors(
        w,
        rng,
        n_vocab=n_vocab,
        n_embd=n_embd,
        n_layer=n_layer,
        n_ff=n_ff,
        n_head=n_head,
        n_kv=n_head,
    )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path

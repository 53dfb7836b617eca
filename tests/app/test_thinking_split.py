"""A reasoning model's reply split into its thinking and its answer, as the window shows it and as
later turns send it: every family's markers, a streaming reply whose parts only grow, and
earlier thinking that reaches the next prompt only where the chat template keeps it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.chats.history import engine_messages, reply_for_templates
from app.chats.records import Conversation, Message
from app.engine.templates import ChatTemplate
from app.markdown_blocks import ThinkingSplit, split_thinking

TEMPLATES = Path(__file__).parent.parent / "data" / "templates"
THOUGHT = "The user greets me.\n\nI should greet them back, briefly."
ANSWER = "Hello! How can I help?\n\n- one\n- two"

# (how the model wrote it, the reply) for each family's markers
FAMILIES = {
    "Qwen 3 / GLM / SmolLM3": f"<think>\n{THOUGHT}\n</think>\n\n{ANSWER}",
    "DeepSeek R1 (the template opens <think>)": f"{THOUGHT}\n</think>\n\n{ANSWER}",
    "gpt-oss (channels)": (
        f"<|channel|>analysis<|message|>{THOUGHT}<|start|>assistant<|channel|>final<|message|>"
        f"{ANSWER}"
    ),
    "gpt-oss with <|end|> spelled out": (
        f"<|channel|>analysis<|message|>{THOUGHT}<|end|><|start|>assistant"
        f"<|channel|>final<|message|>{ANSWER}"
    ),
    "Seed-OSS": f"<seed:think>{THOUGHT}</seed:think>{ANSWER}",
    "Magistral": f"[THINK]{THOUGHT}[/THINK]\n{ANSWER}",
    "leading blank line": f"\n<think>{THOUGHT}</think>\n\n{ANSWER}",
}


def parts(reply: str, split: ThinkingSplit) -> tuple[str, str]:
    return split.thinking(reply), split.answer(reply)


@pytest.mark.parametrize("reply", FAMILIES.values(), ids=FAMILIES.keys())
def test_each_familys_thinking_and_answer_come_apart(reply: str) -> None:
    split = split_thinking(reply)
    assert (split.found, split.closed) == (True, True)
    assert parts(reply, split) == (THOUGHT, ANSWER)


@pytest.mark.parametrize(
    ("reply", "thinking", "answer", "found"),
    [
        pytest.param(ANSWER, "", ANSWER, False, id="no thinking"),
        pytest.param(f"<think>\n\n</think>\n\n{ANSWER}", "", ANSWER, True, id="thinking off"),
        pytest.param(f"<|channel|>final<|message|>{ANSWER}", "", ANSWER, False, id="gpt-oss low"),
        pytest.param("<b>bold</b> text", "", "<b>bold</b> text", False, id="html, not a marker"),
        pytest.param("<th", "", "<th", False, id="finished reply that looks like a marker"),
        pytest.param(
            f"{ANSWER} and <think> tags", "", f"{ANSWER} and <think> tags", False, id="in prose"
        ),
    ],
)
def test_replies_without_thoughts_are_all_answer(
    reply: str, thinking: str, answer: str, found: bool
) -> None:
    split = split_thinking(reply)
    assert split.found is found
    assert parts(reply, split) == (thinking, answer)


@pytest.mark.parametrize(
    "reply",
    [f"<think>\n{THOUGHT}", f"<|channel|>analysis<|message|>{THOUGHT}", f"[THINK]{THOUGHT}\n"],
    ids=["think", "gpt-oss", "magistral"],
)
def test_thinking_cut_short_stays_thinking(reply: str) -> None:
    """Stopped, or out of tokens, mid-thought: no answer, the thoughts are still thoughts."""
    split = split_thinking(reply)
    assert (split.found, split.closed) == (True, False)
    assert parts(reply, split) == (THOUGHT, "")


def stream(reply: str, seed: int) -> list[tuple[ThinkingSplit, str]]:
    """The splits a window makes while ``reply`` streams in random pieces (each search from
    where the last one stopped), with the text so far."""
    rng = random.Random(seed)
    shown: list[tuple[ThinkingSplit, str]] = []
    split, end = ThinkingSplit(), 0
    while end < len(reply):
        end = min(len(reply), end + rng.randint(1, 6))
        split = split_thinking(reply[:end], streaming=True, searched=split.searched)
        shown.append((split, reply[:end]))
    return shown


@pytest.mark.parametrize("reply", FAMILIES.values(), ids=FAMILIES.keys())
def test_a_streaming_reply_ends_split_as_a_whole_one(reply: str) -> None:
    for seed in range(5):
        last, text = stream(reply, seed)[-1]
        assert parts(text, split_thinking(text, streaming=False, searched=last.searched)) == (
            THOUGHT,
            ANSWER,
        )


@pytest.mark.parametrize(
    "reply", [r for name, r in FAMILIES.items() if "R1" not in name], ids=lambda r: r[:14]
)
def test_streamed_thoughts_and_answer_only_grow(reply: str) -> None:
    """What the window shows of each part only lengthens: no marker's start flashes up as a
    thought or an answer and is then taken back (each take-back renders a part anew)."""
    for seed in range(5):
        thinking = answer = ""
        for split, text in stream(reply, seed):
            now_thinking, now_answer = parts(text, split)
            assert now_thinking.startswith(thinking), text
            assert now_answer.startswith(answer), text
            assert "<" not in now_thinking, text
            assert "[" not in now_thinking, text
            assert split.found or not now_answer, text  # nothing shown before its marker
            thinking, answer = now_thinking, now_answer
        assert (thinking, answer) == (THOUGHT, ANSWER)


def test_thinking_is_open_until_its_end_marker() -> None:
    reply = FAMILIES["Qwen 3 / GLM / SmolLM3"]
    at = reply.index("</think>")
    assert not split_thinking(reply[: at + 4], streaming=True).closed
    assert split_thinking(reply[: at + 8], streaming=True).closed


def conversation(system_prompt: str = "") -> Conversation:
    return Conversation(1, "t", "m", system_prompt, {}, 0.0, 0.0)


def history(reply: str, status: str = "complete") -> list[Message]:
    return [
        Message(1, 1, None, "user", "Hi!"),
        Message(2, 1, 1, "assistant", reply, status),  # type: ignore[arg-type]
        Message(3, 1, 2, "user", "What is 2 + 2?"),
    ]


# Real templates (tests/data/templates): (file, BOS, EOS, how the reply is closed in history)
TEMPLATE_FILES = {
    "Qwen 3": ("Qwen-Qwen3-0.6B", "<|endoftext|>", "<|im_end|>"),
    "DeepSeek R1": (
        "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
        "<｜begin▁of▁sentence｜>",
        "<｜end▁of▁sentence｜>",
    ),
    "gpt-oss": ("openai-gpt-oss-120b", "<|startoftext|>", "<|return|>"),
    "GLM 4.6": ("GLM-4.6", "", ""),
}


@pytest.mark.parametrize("name", TEMPLATE_FILES)
@pytest.mark.parametrize("reply", FAMILIES.values(), ids=FAMILIES.keys())
def test_earlier_thinking_is_not_sent_back_to_templates_that_drop_it(name: str, reply: str) -> None:
    file, bos, eos = TEMPLATE_FILES[name]
    template = ChatTemplate((TEMPLATES / f"{file}.jinja").read_text(), bos, eos)
    prompt = template.format(engine_messages(conversation("Be kind."), history(reply)))
    assert "I should greet them back" not in prompt
    assert "Hello! How can I help?" in prompt
    assert "What is 2 + 2?" in prompt


def test_a_template_that_keeps_thinking_gets_it_once_in_its_own_markers() -> None:
    template = ChatTemplate(
        (TEMPLATES / "ByteDance-Seed-OSS.jinja").read_text(), "<seed:bos>", "<seed:eos>"
    )
    for reply in FAMILIES.values():
        prompt = template.format(engine_messages(conversation(), history(reply)))
        assert prompt.count("I should greet them back") == 1
        assert f"<seed:think>{THOUGHT}</seed:think>" in prompt
        assert "<|channel|>" not in prompt
        assert "[THINK]" not in prompt


def test_thoughts_cut_short_are_not_sent_back_and_the_turns_still_alternate() -> None:
    template = ChatTemplate(
        (TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text(), "<|endoftext|>", "<|im_end|>"
    )
    stopped = history(f"<think>\n{THOUGHT}", status="interrupted")
    prompt = template.format(engine_messages(conversation(), stopped))
    assert "I should greet" not in prompt
    assert prompt.count("<|im_start|>assistant") == 2  # the stopped reply, then the next one


def test_replies_without_thinking_reach_the_engine_as_written() -> None:
    assert reply_for_templates(ANSWER) == ANSWER
    sent = engine_messages(conversation(), history(ANSWER))
    assert [m["content"] for m in sent] == ["Hi!", ANSWER, "What is 2 + 2?"]


def test_gpt_oss_channel_markers_reach_the_reply_as_text(tmp_path: Path) -> None:
    """What the split of gpt-oss' replies rests on: llama.cpp spells its channel markers out in
    the text it generates (in a model with gpt-oss' end tokens); <|return|>, which ends a reply,
    is not shown."""
    from app.engine.llama_cpp_engine import LlamaCppEngine
    from app.engine.types import LoadParams
    from tests.gguf_factory import write_tiny_model

    shown = ("<|channel|>", "<|message|>", "<|start|>", "<|end|>")
    model = write_tiny_model(
        tmp_path / "harmony.gguf",
        control_tokens=(*shown, "<|return|>", "<|call|>"),
        eos_token="<|return|>",
    )
    engine = LlamaCppEngine()
    try:
        engine.load(str(model), LoadParams(context_length=256))
        vocab = engine.vocab
        pieces = {}
        for marker in (*shown, "<|return|>"):
            [token] = vocab.tokenize(marker.encode(), add_bos=False)
            pieces[marker] = vocab.piece(token).decode()
    finally:
        engine.close()
    assert pieces == {**{m: m for m in shown}, "<|return|>": ""}

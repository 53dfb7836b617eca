"""The real chat templates of 30+ model families (tests/data/templates, sources in its README),
rendered through Hearth's own template path: what a correct render gives for plain chats, and
where a reply ends.

Each family's expectations are the format its model was tuned on (where the reply begins, the
marker that ends a turn), written here by hand, not read back from the renders.
"""

from __future__ import annotations

import datetime
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.chats.turn import request_reply
from app.engine import llama_cpp_engine
from app.engine.llama_cpp_engine import LlamaCppEngine
from app.engine.templates import ChatTemplate, template_messages
from app.engine.types import ChatMessage, LoadParams
from app.settings import Sampling
from tests.gguf_factory import write_tiny_model
from tests.scripted_model import eos_of, script_model, tokens_of

TEMPLATES = Path(__file__).parent.parent / "data" / "templates"


@dataclass(frozen=True)
class Family:
    family: str
    bos: str  # the model's BOS and EOS token texts, which templates write as bos_token/eos_token
    eos: str
    reply_start: str  # what a prompt ends with: the assistant's header the reply follows
    turn_end: str  # the marker the model ends its reply with
    system_role: bool = True  # False: Hearth folds the system prompt into the first message
    # A template that puts earlier thinking back, in its own markup ("" for those that drop it).
    kept_thinking: str = ""
    thinking_switch: bool = False  # enable_thinking changes the prompt
    tool_use: bool = False  # written for tool use: must render a plain chat all the same
    # Tool-use variants (picked by Hugging Face only when tools are passed) describe tool calls
    # even with no tools; Command-R's does it after the user's message.
    tool_prompt_always: bool = False
    instructions_last: bool = False
    history_end: str = ""  # how an earlier reply is closed, where not with ``turn_end``

    def ends_prompt(self, prompt: str, last_user_text: str) -> bool:
        """Whether ``prompt`` ends with the reply's header right after the user's message."""
        if self.instructions_last:
            return prompt.endswith(self.reply_start) and last_user_text in prompt
        return prompt.endswith(last_user_text + self.reply_start)


LLAMA3 = ("<|begin_of_text|>", "<|eot_id|>")
LLAMA3_REPLY = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
CHATML_REPLY = "<|im_end|>\n<|im_start|>assistant\n"
GEMMA = ("<bos>", "<eos>")
GEMMA_REPLY = "<end_of_turn>\n<start_of_turn>model\n"
R1 = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")
COHERE = ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>")
COHERE_REPLY = "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
GRANITE = ("<|end_of_text|>", "<|end_of_text|>")
GRANITE_REPLY = "<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"

FAMILIES: dict[str, Family] = {
    "meta-llama-Llama-2-7b-chat-hf": Family("Llama 2", "<s>", "</s>", " [/INST]", "</s>"),
    "meta-llama-Llama-3.1-8B-Instruct": Family("Llama 3.1", *LLAMA3, LLAMA3_REPLY, "<|eot_id|>"),
    "meta-llama-Llama-3.2-3B-Instruct": Family("Llama 3.2", *LLAMA3, LLAMA3_REPLY, "<|eot_id|>"),
    "Qwen-Qwen2.5-7B-Instruct": Family(
        "Qwen 2.5", "<|endoftext|>", "<|im_end|>", CHATML_REPLY, "<|im_end|>", tool_use=True
    ),
    "Qwen-QwQ-32B": Family(
        "QwQ",
        "<|endoftext|>",
        "<|im_end|>",
        CHATML_REPLY + "<think>\n",
        "<|im_end|>",
        thinking_switch=True,
        tool_use=True,
    ),
    "Qwen-Qwen3-0.6B": Family(
        "Qwen 3",
        "<|endoftext|>",
        "<|im_end|>",
        CHATML_REPLY,
        "<|im_end|>",
        thinking_switch=True,
        tool_use=True,
    ),
    "google-gemma-7b-it": Family(
        "Gemma 1", *GEMMA, GEMMA_REPLY, "<end_of_turn>", system_role=False
    ),
    "google-gemma-2-2b-it": Family(
        "Gemma 2", *GEMMA, GEMMA_REPLY, "<end_of_turn>", system_role=False
    ),
    # Gemma 3's template folds the system prompt into the first user turn itself.
    "google-gemma-3-it": Family("Gemma 3", *GEMMA, GEMMA_REPLY, "<end_of_turn>"),
    "mistralai-Mistral-7B-Instruct-v0.2": Family(
        "Mistral 7B", "<s>", "</s>", " [/INST]", "</s>", system_role=False
    ),
    "mistralai-Mistral-Nemo-Instruct-2407": Family(
        "Mistral Nemo", "<s>", "</s>", "[/INST]", "</s>", tool_use=True
    ),
    "Mistral-Small-3.2-24B-Instruct-2506": Family(
        "Mistral Small 3.2", "<s>", "</s>", "[/INST]", "</s>", tool_use=True
    ),
    "unsloth-mistral-Devstral-Small-2507": Family(
        "Devstral", "<s>", "</s>", "[/INST]", "</s>", tool_use=True
    ),
    "microsoft-Phi-3.5-mini-instruct": Family(
        "Phi-3.5", "<s>", "<|endoftext|>", "<|end|>\n<|assistant|>\n", "<|end|>"
    ),
    "microsoft-phi-4": Family(
        "Phi-4",
        "<|endoftext|>",
        "<|im_end|>",
        "<|im_end|><|im_start|>assistant<|im_sep|>",
        "<|im_end|>",
    ),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": Family(
        "DeepSeek R1 (Qwen distill)",
        *R1,
        "<｜Assistant｜><think>\n",
        R1[1],
        thinking_switch=True,
    ),
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B": Family(
        "DeepSeek R1 (Llama distill)", *R1, "<｜Assistant｜><think>\n", R1[1]
    ),
    "deepseek-ai-DeepSeek-V3.1": Family(
        "DeepSeek V3.1", *R1, "<｜Assistant｜><think>", R1[1], thinking_switch=True
    ),
    "ibm-granite-granite-3.3-2B-Instruct": Family(
        "Granite 3.3", *GRANITE, GRANITE_REPLY, "<|end_of_text|>", tool_use=True
    ),
    "ibm-granite-granite-4.0": Family(
        "Granite 4.0", *GRANITE, GRANITE_REPLY, "<|end_of_text|>", tool_use=True
    ),
    "CohereForAI-c4ai-command-r-plus-default": Family(
        "Command-R", *COHERE, "<|END_OF_TURN_TOKEN|>" + COHERE_REPLY, "<|END_OF_TURN_TOKEN|>"
    ),
    "CohereForAI-c4ai-command-r-plus-tool_use": Family(
        "Command-R (tool use)",
        *COHERE,
        "]```<|END_OF_TURN_TOKEN|>" + COHERE_REPLY,
        "<|END_OF_TURN_TOKEN|>",
        tool_use=True,
        tool_prompt_always=True,
        instructions_last=True,
    ),
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use": Family(
        "Command R7B",
        *COHERE,
        "<|END_OF_TURN_TOKEN|>" + COHERE_REPLY,
        "<|END_RESPONSE|>",
        thinking_switch=True,
        tool_use=True,
    ),
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": Family(
        "Hermes 3",
        "<|begin_of_text|>",
        "<|im_end|>",
        CHATML_REPLY,
        "<|im_end|>",
        tool_use=True,
        tool_prompt_always=True,
    ),
    "openai-gpt-oss-120b": Family(
        "gpt-oss",
        "<|startoftext|>",
        "<|return|>",
        "<|end|><|start|>assistant",
        "<|return|>",  # <|end|> closes each message, and is no end of the reply
        history_end="<|end|>",
    ),
    "HuggingFaceTB-SmolLM3-3B": Family(
        "SmolLM3",
        "<|im_start|>",
        "<|im_end|>",
        CHATML_REPLY,
        "<|im_end|>",
        thinking_switch=True,
        tool_use=True,
    ),
    "tiiuae-Falcon3-7B-Instruct": Family(
        "Falcon 3",
        "<|startoftext|>",
        "<|endoftext|>",
        "\n<|assistant|>\n",
        "<|endoftext|>",
        tool_use=True,
    ),
    "GLM-4.6": Family(
        "GLM-4.6",
        "[gMASK]",
        "<|endoftext|>",
        "<|assistant|>",
        "<|user|>",  # GLM ends its turn by starting the user's
        thinking_switch=True,
        tool_use=True,
    ),
    "moonshotai-Kimi-K2": Family(
        "Kimi K2",
        "[BOS]",
        "[EOS]",
        "<|im_end|><|im_assistant|>assistant<|im_middle|>",
        "<|im_end|>",
        tool_use=True,
    ),
    "openbmb-MiniCPM3-4B": Family(
        "MiniCPM 3", "<s>", "<|im_end|>", CHATML_REPLY, "<|im_end|>", tool_use=True
    ),
    "openbmb-MiniCPM5-1B": Family(
        "MiniCPM 5",
        "<s>",
        "<|im_end|>",
        CHATML_REPLY + "<think>\n",
        "<|im_end|>",
        thinking_switch=True,
        tool_use=True,
    ),
    "meetkai-functionary-medium-v3.1": Family(
        "Functionary 3.1", *LLAMA3, LLAMA3_REPLY, "<|eot_id|>", tool_use=True
    ),
    "meetkai-functionary-medium-v3.2": Family(
        "Functionary 3.2", *LLAMA3, LLAMA3_REPLY + ">>>", "<|eot_id|>", tool_use=True
    ),
    "fireworks-ai-llama-3-firefunction-v2": Family(
        "FireFunction v2", *LLAMA3, LLAMA3_REPLY, "<|eot_id|>", tool_use=True
    ),
    "LFM2.5-Instruct": Family(
        "LFM2.5", "<|startoftext|>", "<|im_end|>", CHATML_REPLY, "<|im_end|>", tool_use=True
    ),
    "ByteDance-Seed-OSS": Family(
        "Seed-OSS",
        "<seed:bos>",
        "<seed:eos>",
        "<seed:eos><seed:bos>assistant\n",
        "<seed:eos>",
        kept_thinking="<seed:think>I should greet them.</seed:think>",
        tool_use=True,
    ),
    "NVIDIA-Nemotron-Nano-v2": Family(
        "Nemotron Nano 2",
        "<SPECIAL_10>",
        "<SPECIAL_12>",
        "\n<SPECIAL_11>Assistant\n<think>\n",
        "<SPECIAL_12>",
        tool_use=True,
    ),
    "Apertus-8B-Instruct": Family(
        "Apertus",
        "<s>",
        "</s>",
        "<|user_end|><|assistant_start|>",
        "<|assistant_end|>",
        thinking_switch=True,
        tool_use=True,
    ),
}

SYSTEM = "You answer in one short sentence."
FIRST, REPLY, SECOND = "Where is Lyon?", "Lyon is in France.", "And Porto?"


def template_of(name: str) -> ChatTemplate:
    family = FAMILIES[name]
    return ChatTemplate((TEMPLATES / f"{name}.jinja").read_text(), family.bos, family.eos)


def msg(role: str, content: str) -> ChatMessage:
    return {"role": role, "content": content}  # type: ignore[typeddict-item]


def test_at_least_twenty_families_and_each_file_is_described() -> None:
    files = sorted(p.stem for p in TEMPLATES.glob("*.jinja"))
    assert files == sorted(FAMILIES)
    assert len({f.family.split(" (")[0] for f in FAMILIES.values()}) >= 20
    readme = (TEMPLATES / "README.md").read_text()
    assert all(f"`{name}.jinja`" in readme for name in files)


NAMES = sorted(FAMILIES)


@pytest.mark.parametrize("name", NAMES)
def test_system_and_user(name: str) -> None:
    family, template = FAMILIES[name], template_of(name)
    prompt = template.format([msg("system", SYSTEM), msg("user", FIRST)])
    assert prompt.count(SYSTEM) == 1
    assert prompt.count(FIRST) == 1
    assert prompt.index(SYSTEM) < prompt.index(FIRST)
    assert family.ends_prompt(prompt, FIRST)
    # Templates without a system role get it at the start of the first user message, and the
    # user hears of it once.
    assert template.folds_system is not family.system_role
    assert bool(template.take_notice()) is not family.system_role
    if not family.system_role:
        assert f"{SYSTEM}\n\n{FIRST}" in prompt


@pytest.mark.parametrize("name", NAMES)
def test_user_assistant_user(name: str) -> None:
    family, template = FAMILIES[name], template_of(name)
    prompt = template.format([msg("user", FIRST), msg("assistant", REPLY), msg("user", SECOND)])
    for text in (FIRST, REPLY, SECOND):
        assert prompt.count(text) == 1, text
    assert prompt.index(FIRST) < prompt.index(REPLY) < prompt.index(SECOND)
    assert family.ends_prompt(prompt, SECOND)
    # The earlier reply is closed as the model closes its own: with the turn's end marker.
    closed = prompt[prompt.index(REPLY) : prompt.index(SECOND)]
    assert (family.history_end or family.turn_end) in closed


@pytest.mark.parametrize("name", NAMES)
def test_a_long_chat_with_a_system_prompt(name: str) -> None:
    family, template = FAMILIES[name], template_of(name)
    chat = [msg("system", SYSTEM)]
    texts = [SYSTEM]
    for i in range(4):
        texts += [f"Question number {i}?", f"Answer number {i}."]
        chat += [msg("user", texts[-2]), msg("assistant", texts[-1])]
    chat.append(msg("user", SECOND))
    prompt = template.format(chat)
    assert all(prompt.count(text) == 1 for text in [*texts, SECOND])
    assert family.ends_prompt(prompt, SECOND)


@pytest.mark.parametrize("name", NAMES)
def test_the_reply_ends_at_the_families_end_of_turn_marker(name: str) -> None:
    family, template = FAMILIES[name], template_of(name)
    assert template.turn_end() == family.turn_end


@pytest.mark.parametrize("name", NAMES)
def test_earlier_thinking_goes_back_only_where_the_template_says(name: str) -> None:
    """A reasoning model's earlier thinking is left out of later prompts (DeepSeek's and Qwen's
    rule), whether the stored reply opens its <think> or its prompt did; Seed-OSS's template
    puts it back in its own markup."""
    family, template = FAMILIES[name], template_of(name)
    for reply in (
        "<think>\nI should greet them.\n</think>\n\nHello there!",
        "I should greet them.\n</think>\n\nHello there!",  # R1's prompt opened the <think>
    ):
        prompt = template.format([msg("user", FIRST), msg("assistant", reply), msg("user", SECOND)])
        assert prompt.count("Hello there!") == 1
        if family.kept_thinking:
            assert family.kept_thinking in prompt
        else:
            assert "I should greet them." not in prompt
        assert "</think>\n\nHello there!" not in prompt


@pytest.mark.parametrize("name", NAMES)
def test_thinking_can_be_turned_off_where_the_template_has_the_switch(name: str) -> None:
    family, template = FAMILIES[name], template_of(name)
    chat = [msg("system", SYSTEM), msg("user", FIRST)]
    on, off = template.format(chat), template.format(chat, enable_thinking=False)
    assert template.has_thinking_switch is family.thinking_switch
    assert (on != off) is family.thinking_switch
    assert off.count(FIRST) == 1
    assert template.format(chat) == on  # the switch does not stick


def test_qwen3_without_thinking_opens_and_closes_an_empty_think_block() -> None:
    template = template_of("Qwen-Qwen3-0.6B")
    chat = [msg("user", FIRST)]
    assert template.format(chat).endswith(CHATML_REPLY)
    assert template.format(chat, enable_thinking=False).endswith(
        CHATML_REPLY + "<think>\n\n</think>\n\n"
    )


@pytest.mark.parametrize(
    "name", [n for n in NAMES if FAMILIES[n].tool_use and not FAMILIES[n].tool_prompt_always]
)
def test_tool_use_templates_offer_no_tools_in_a_plain_chat(name: str) -> None:
    prompt = template_of(name).format([msg("system", SYSTEM), msg("user", FIRST)])
    # The tool list these templates write when given tools.
    assert not re.search(r"<tools>|<\|tool|\[AVAILABLE_TOOLS\]|\"parameters\":", prompt)


def test_gpt_oss_gets_earlier_thinking_out_of_the_final_channel() -> None:
    """gpt-oss keeps a reply's thinking apart from its answer (``thinking``) and leaves it out
    of later prompts; passed inside the content, it became part of the answer the model saw."""
    template = template_of("openai-gpt-oss-120b")
    reply = "<think>\nI should greet them.\n</think>\n\nHello there!"
    prompt = template.format([msg("user", FIRST), msg("assistant", reply), msg("user", SECOND)])
    assert "<|channel|>final<|message|>Hello there!<|end|>" in prompt
    assert "<think>" not in prompt


def test_llama_3_1_is_told_the_date() -> None:
    prompt = template_of("meta-llama-Llama-3.1-8B-Instruct").format([msg("user", FIRST)])
    assert f"Today Date: {datetime.date.today():%d %b %Y}" in prompt


# Where a reply ends, in the engine: a tiny GGUF whose template ends turns with a marker that
# llama.cpp does not know, so the vocabulary does not mark it as an end of generation.

MEGREZ_LIKE = (  # the shape of Infinigence's Megrez template
    "{% for message in messages %}"
    "{{ '<|role_start|>' + message['role'] + '<|role_end|>' }}"
    "{{ message['content'] + '<|turn_end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|role_start|>assistant<|role_end|>' }}{% endif %}"
)
MARKERS = ("<|role_start|>", "<|role_end|>", "<|turn_end|>")


@pytest.fixture(scope="module")
def turn_end_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(
        tmp_path_factory.mktemp("models") / "megrez-like.gguf",
        chat_template=MEGREZ_LIKE,
        control_tokens=MARKERS,
        eos_token="</s>",
    )


@pytest.fixture
def turn_end_engine(turn_end_model: Path) -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine()
    engine.load(str(turn_end_model), LoadParams(context_length=512, threads=2))
    yield engine
    engine.unload()


@pytest.fixture
def foreign_template_engine(tiny_model: Path) -> Iterator[LlamaCppEngine]:
    """A template whose markers this vocabulary does not have (as ChatML's for a Gemma)."""
    engine = LlamaCppEngine()
    params = LoadParams(context_length=512, threads=2, chat_template_override=MEGREZ_LIKE)
    engine.load(str(tiny_model), params)
    yield engine
    engine.unload()


def _reply(engine: LlamaCppEngine, script: list[int], monkeypatch: pytest.MonkeyPatch) -> Any:
    script_model(monkeypatch, [*script, eos_of(engine)])
    reply = engine.chat([msg("user", "hello")], Sampling(max_tokens=20), threading.Event())
    return "".join(reply), reply.stats


def test_a_reply_stops_at_the_templates_end_marker_the_vocabulary_does_not_flag(
    turn_end_engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = turn_end_engine
    marker = engine.vocab.single_token("<|turn_end|>")
    lib = llama_cpp_engine.llama()
    assert marker >= 0
    assert not lib.llama_vocab_is_eog(engine.vocab.handle, marker)  # llama.cpp would go on
    words = tokens_of(engine, " hello", " world", " fire", " warm")
    text, stats = _reply(engine, [*words[:2], marker, *words[2:]], monkeypatch)
    assert text.strip() == "hello world"
    assert stats.stop_reason == "eos"
    assert stats.generated_tokens == 2


def test_a_reply_stops_where_the_model_spells_out_a_marker_its_vocabulary_lacks(
    foreign_template_engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a template made for another vocabulary the model can only write the marker with
    ordinary tokens (here one byte each); the user sees neither it nor what follows it."""
    engine = foreign_template_engine
    assert engine.vocab.single_token("<|turn_end|>") < 0
    words = tokens_of(engine, " hello", " world", " fire")
    spelled = tokens_of(engine, *"<|turn_end|>")
    text, stats = _reply(engine, [*words[:2], *spelled, words[2]], monkeypatch)
    assert text.strip() == "hello world"
    assert "<" not in text
    assert stats.stop_reason == "stop"


def test_plain_completions_do_not_stop_at_the_chat_marker(
    turn_end_engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text completion (the API server's /v1/completions) is not a chat turn: only the
    vocabulary's end-of-generation tokens and the caller's stops end it."""
    engine = turn_end_engine
    marker = engine.vocab.single_token("<|turn_end|>")
    words = tokens_of(engine, " hello", " world")
    script_model(monkeypatch, [words[0], marker, words[1], eos_of(engine)])
    reply = engine.complete("hello", Sampling(max_tokens=20), threading.Event())
    assert "".join(reply).strip() == "hello world"
    assert reply.stats.generated_tokens == 3


def test_a_continued_reply_stops_at_the_chat_marker_as_the_reply_did(
    turn_end_engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Continue (a plain completion of the prompt and the reply so far) ends where the chat
    template ends a turn, not at the token limit in made-up turns."""
    engine = turn_end_engine
    marker = engine.vocab.single_token("<|turn_end|>")
    words = tokens_of(engine, " hello", " world", " fire")
    script_model(monkeypatch, [words[0], words[1], marker, words[2], eos_of(engine)])
    history = [msg("user", "hello")]
    reply = request_reply(engine, history, "Once", Sampling(max_tokens=20), threading.Event())
    assert "".join(reply).strip() == "hello world"
    assert reply.stats.generated_tokens == 2


def test_a_marker_the_vocabulary_has_as_a_token_is_only_text_when_spelled_out(
    turn_end_engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written with ordinary tokens, a marker the model has as one token is the model writing
    about it (as "</s>" ends HTML's strike-through): the reply goes on."""
    engine = turn_end_engine
    hello, world = tokens_of(engine, " hello", " world")
    text, stats = _reply(engine, [hello, *tokens_of(engine, *"<|turn_end|>"), world], monkeypatch)
    assert text == " hello<|turn_end|> world"
    assert stats.stop_reason == "eos"


def test_an_answer_that_mentions_the_end_marker_goes_back_whole() -> None:
    reply = "<think>\nhm\n</think>\n\nUse </think> to close. Then </think> again. End."
    [entry] = template_messages([{"role": "assistant", "content": reply}])
    assert entry["content"] == "Use </think> to close. Then </think> again. End."
    assert entry["reasoning_content"] == "hm"

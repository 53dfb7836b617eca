"""Per-conversation settings and system-prompt presets."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from app.chats.chat_settings import ChatSettings
from app.chats.store import ChatStore, PresetError
from app.chats.turn import Turn
from app.settings import Sampling


@pytest.fixture
def store(tmp_path: Path) -> ChatStore:
    return ChatStore(tmp_path / "chats.sqlite3")


def test_a_conversation_keeps_its_own_settings_over_the_defaults(
    tmp_path: Path, store: ChatStore
) -> None:
    c = store.create_conversation("x")
    assert store.chat_settings(c.id).is_default
    mine = ChatSettings(
        temperature=0.1,
        max_tokens=64,
        seed=7,
        context_length=8192,
        thinking=False,
        thinking_budget=512,
    )
    store.set_chat_settings(c.id, mine)
    store.close()
    reopened = ChatStore(tmp_path / "chats.sqlite3")
    assert reopened.chat_settings(c.id) == mine
    conversation = reopened.conversation(c.id)
    assert conversation is not None
    assert conversation.settings == mine
    defaults = Sampling(temperature=0.7, top_p=0.9, max_tokens=1024, seed=-1)
    sampling = mine.sampling(defaults)
    assert (sampling.temperature, sampling.max_tokens, sampling.seed) == (0.1, 64, 7)
    assert (sampling.top_p, sampling.top_k) == (0.9, defaults.top_k)  # the app's, not set here
    assert mine.context_length_or(4096) == 8192
    assert ChatSettings().context_length_or(4096) == 4096
    # Only what was set is stored, with the format's version.
    stored = json.loads(reopened._db.execute("SELECT sampling FROM conversations").fetchone()[0])
    assert stored == {
        "version": 1,
        "temperature": 0.1,
        "max_tokens": 64,
        "seed": 7,
        "context_length": 8192,
        "thinking": False,
        "thinking_budget": 512,
    }
    # Reset to defaults.
    reopened.set_chat_settings(c.id, ChatSettings())
    assert reopened.chat_settings(c.id) == ChatSettings()


def test_setting_one_value_back_to_the_default(store: ChatStore) -> None:
    s = ChatSettings(temperature=1.2, top_k=20)
    assert s.replace(temperature=None) == ChatSettings(top_k=20)
    assert s.replace(top_k=None, temperature=None).is_default


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("temperature", math.nan),
        ("top_p", 1.5),
        ("top_k", 2.5),
        ("max_tokens", 0),
        ("context_length", 100),
        ("thinking", 1),
        ("seed", True),
        ("thinking_budget", -1),
        ("min_p", "0.1"),
    ],
)
def test_values_out_of_range_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ChatSettings(**{field: value})  # type: ignore[arg-type]


def test_stored_values_that_make_no_sense_count_as_not_set(
    store: ChatStore, caplog: pytest.LogCaptureFixture
) -> None:
    c = store.create_conversation("x")
    store.update_conversation(
        c.id,
        sampling={
            "version": 1,
            "temperature": "hot",
            "top_k": 40,
            "min_p": 7,
            "colour": "red",
            "repeat_penalty": 1,
            "thinking": None,
        },
    )
    with caplog.at_level(logging.WARNING):
        settings = store.chat_settings(c.id)
    assert settings == ChatSettings(top_k=40, repeat_penalty=1.0)
    assert isinstance(settings.repeat_penalty, float)
    assert "colour" in caplog.text
    store._db.execute("UPDATE conversations SET sampling = 'not json' WHERE id = ?", (c.id,))
    assert store.chat_settings(c.id).is_default
    assert store.chat_settings(c.id + 99).is_default  # no such conversation


def test_a_new_chat_starts_with_the_settings_chosen_in_its_draft(store: ChatStore) -> None:
    turn = Turn.start(
        store,
        None,
        "hi",
        model_path="m",
        model_name="M",
        system_prompt="",
        settings=ChatSettings(temperature=0.0),
    )
    assert store.chat_settings(turn.conversation.id) == ChatSettings(temperature=0.0)
    plain = Turn.start(store, None, "hi", model_path="m", model_name="M", system_prompt="")
    assert store.conversation(plain.conversation.id).sampling == {}  # type: ignore[union-attr]


def test_presets_save_list_edit_delete_and_a_default(tmp_path: Path, store: ChatStore) -> None:
    presets = store.presets
    assert presets.all() == []
    assert presets.system_prompt_for_new_chat("from Settings") == "from Settings"
    coder = presets.save("Coder", "You write Python.")
    tutor = presets.save("  Patient   tutor ", "Explain step by step.", default=True)
    assert tutor.name == "Patient tutor"
    assert [p.name for p in presets.all()] == ["Patient tutor", "Coder"]  # the default first
    assert presets.system_prompt_for_new_chat("from Settings") == "Explain step by step."
    with pytest.raises(PresetError, match="exists already"):
        presets.save("coder", "another")
    with pytest.raises(PresetError, match="needs a name"):
        presets.save("  ", "x")
    edited = presets.update(coder.id, text="You write careful Python.")
    assert (edited.name, edited.text) == ("Coder", "You write careful Python.")
    with pytest.raises(PresetError, match="exists already"):
        presets.update(coder.id, name="PATIENT TUTOR")
    presets.set_default(coder.id)
    assert presets.default() == presets.get(coder.id)
    assert [p.is_default for p in presets.all()] == [True, False]
    with pytest.raises(PresetError, match="no longer exists"):
        presets.set_default(9999)
    assert presets.default() == presets.get(coder.id)  # unchanged by the failed attempt
    presets.delete(coder.id)
    assert presets.default() is None
    assert [p.name for p in presets.all()] == ["Patient tutor"]
    with pytest.raises(PresetError, match="no longer exists"):
        presets.update(coder.id, text="x")
    store.close()
    assert [p.name for p in ChatStore(tmp_path / "chats.sqlite3").presets.all()] == [
        "Patient tutor"
    ]

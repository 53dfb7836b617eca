"""Export and import: Hearth's JSON round-trips, Markdown, ChatGPT's export, no duplicates.

The ChatGPT fixture below is ``conversations.json`` made by hand in the shape ChatGPT writes it:
field names and nesting as public parsers document real exports (e.g.
mitkury/chatgpt-export-parser, docs/chatgpt-data-export-format.md): a list of conversations, each
with ``mapping`` (node id → ``{id, message, parent, children}``) from a root node without a
message, ``current_node``, and messages with ``author``, ``content`` (``content_type`` and
``parts``, or ``text`` for code and tool output), ``status``, ``metadata`` and ``recipient``.
The conversations themselves are invented.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from app.chats.store import ChatStore
from app.chats.transfer import TransferError, export_markdown, parse_import, read_import


def _message(
    node_id: str,
    role: str,
    content: dict[str, Any],
    at: float,
    *,
    metadata: dict[str, Any] | None = None,
    recipient: str = "all",
    name: str | None = None,
) -> dict[str, Any]:
    return {
        "id": node_id,
        "author": {"role": role, "name": name, "metadata": {}},
        "create_time": at,
        "update_time": None,
        "content": content,
        "status": "finished_successfully",
        "end_turn": True if role == "assistant" else None,
        "weight": 1.0,
        "metadata": metadata or {},
        "recipient": recipient,
        "channel": None,
    }


def _text(*parts: Any) -> dict[str, Any]:
    return {"content_type": "text", "parts": list(parts)}


def _tree(nodes: list[tuple[str, str | None, dict[str, Any] | None]]) -> dict[str, Any]:
    """The ``mapping`` of (node id, parent id, message) triples, children filled in."""
    mapping: dict[str, Any] = {
        node_id: {"id": node_id, "message": message, "parent": parent, "children": []}
        for node_id, parent, message in nodes
    }
    for node_id, parent, _ in nodes:
        if parent is not None:
            mapping[parent]["children"].append(node_id)
    return mapping


def _conversation(
    conversation_id: str, title: str, at: float, mapping: dict[str, Any], current: str
) -> dict[str, Any]:
    return {
        "title": title,
        "create_time": at,
        "update_time": at + 600,
        "mapping": mapping,
        "moderation_results": [],
        "current_node": current,
        "plugin_ids": None,
        "conversation_id": conversation_id,
        "conversation_template_id": None,
        "gizmo_id": None,
        "gizmo_type": None,
        "is_archived": False,
        "is_starred": None,
        "safe_urls": [],
        "blocked_urls": [],
        "default_model_slug": "gpt-4o",
        "disabled_tool_ids": [],
        "id": conversation_id,
    }


GPT = {"model_slug": "gpt-4o", "finish_details": {"type": "stop", "stop_tokens": [200002]}}
HIDDEN = {"is_visually_hidden_from_conversation": True}

# 1. A plain chat with custom instructions, a regenerated answer (the second one shown) and an
# edited question whose old version stays as a branch.
T1 = 1_700_000_000.0
TRIP = _conversation(
    "6751a1c0-0000-800c-a000-000000000001",
    "Lisbon weekend",
    T1,
    _tree(
        [
            ("client-created-root", None, None),
            (
                "sys",
                "client-created-root",
                _message("sys", "system", _text(""), T1, metadata=HIDDEN),
            ),
            (
                "ctx",
                "sys",
                _message(
                    "ctx",
                    "user",
                    {
                        "content_type": "user_editable_context",
                        "user_profile": "I live in Porto.",
                        "user_instructions": "Answer briefly.",
                    },
                    T1,
                    metadata={
                        **HIDDEN,
                        "user_context_message_data": {
                            "about_user_message": "I live in Porto.",
                            "about_model_message": "Answer briefly.",
                        },
                        "is_user_system_message": True,
                    },
                ),
            ),
            ("u1", "ctx", _message("u1", "user", _text("Plan a weekend in Lisbon."), T1 + 1)),
            (
                "a1",
                "u1",
                _message("a1", "assistant", _text("Day 1: Alfama."), T1 + 2, metadata=GPT),
            ),
            (
                "a1b",
                "u1",
                _message(
                    "a1b",
                    "assistant",
                    _text("Saturday: Belém. Sunday: Sintra."),
                    T1 + 3,
                    metadata=GPT,
                ),
            ),
            ("u2", "a1b", _message("u2", "user", _text("Where to eat?"), T1 + 4)),
            ("a2", "u2", _message("a2", "assistant", _text("Try a tasca."), T1 + 5, metadata=GPT)),
            ("u2b", "a1b", _message("u2b", "user", _text("Where to eat fish?"), T1 + 6)),
            (
                "a2b",
                "u2b",
                _message(
                    "a2b",
                    "assistant",
                    _text("Cais do Sodré."),
                    T1 + 7,
                    metadata={"model_slug": "gpt-4o", "finish_details": {"type": "max_tokens"}},
                ),
            ),
        ]
    ),
    current="a2b",
)

# 2. A picture sent with a question, and Code Interpreter: code, its output, then the answer.
T2 = 1_700_100_000.0
CHART = _conversation(
    "6751a1c0-0000-800c-a000-000000000002",
    "Sales chart",
    T2,
    _tree(
        [
            ("root", None, None),
            ("s", "root", _message("s", "system", _text(""), T2, metadata=HIDDEN)),
            (
                "u",
                "s",
                _message(
                    "u",
                    "user",
                    {
                        "content_type": "multimodal_text",
                        "parts": [
                            {
                                "content_type": "image_asset_pointer",
                                "asset_pointer": "file-service://file-3Zq8mXjY2v6nKp1",
                                "size_bytes": 182044,
                                "width": 1024,
                                "height": 768,
                                "fovea": None,
                                "metadata": {"dalle": None, "gizmo": None, "sanitized": True},
                            },
                            "What is the total of this table?",
                        ],
                    },
                    T2 + 1,
                    metadata={"attachments": [{"id": "file-3Zq8mXjY2v6nKp1", "name": "t.png"}]},
                ),
            ),
            (
                "code",
                "u",
                _message(
                    "code",
                    "assistant",
                    {
                        "content_type": "code",
                        "language": "unknown",
                        "response_format_name": None,
                        "text": "print(120 + 80)",
                    },
                    T2 + 2,
                    metadata={**GPT, "finish_details": None},
                    recipient="python",
                ),
            ),
            (
                "out",
                "code",
                _message(
                    "out",
                    "tool",
                    {"content_type": "execution_output", "text": "200"},
                    T2 + 3,
                    metadata={"is_complete": True, "aggregate_result": {"status": "success"}},
                    name="python",
                ),
            ),
            (
                "answer",
                "out",
                _message("answer", "assistant", _text("The total is 200."), T2 + 4, metadata=GPT),
            ),
        ]
    ),
    current="answer",
)

# 3. A reasoning model: thoughts, Python it ran while thinking and that code's output are all
# folded away in ChatGPT; only the final answer shows. The chat was pinned.
T3 = 1_700_200_000.0
THINKING = {"model_slug": "gpt-5-thinking", "reasoning_status": "is_reasoning"}
PUZZLE = _conversation(
    "6751a1c0-0000-800c-a000-000000000003",
    "Prime check",
    T3,
    _tree(
        [
            ("r", None, None),
            ("q", "r", _message("q", "user", _text("Is 2027 prime?"), T3 + 1)),
            (
                "th",
                "q",
                _message(
                    "th",
                    "assistant",
                    {
                        "content_type": "thoughts",
                        "thoughts": [
                            {
                                "summary": "Checking divisors",
                                "content": "Try primes up to 45.",
                                "chunks": [],
                                "finished": True,
                            }
                        ],
                        "source_analysis_msg_id": "a-1",
                    },
                    T3 + 2,
                    metadata=THINKING,
                ),
            ),
            (
                "py",
                "th",
                _message(
                    "py",
                    "assistant",
                    _text("sympy.isprime(2027)"),
                    T3 + 3,
                    metadata=THINKING,
                    recipient="python",
                ),
            ),
            (
                "res",
                "py",
                _message(
                    "res",
                    "tool",
                    {"content_type": "execution_output", "text": "True"},
                    T3 + 4,
                    metadata=THINKING,
                    name="python",
                ),
            ),
            (
                "recap",
                "res",
                _message(
                    "recap",
                    "assistant",
                    {"content_type": "reasoning_recap", "content": "Thought for 9s"},
                    T3 + 5,
                    metadata={"model_slug": "gpt-5-thinking"},
                ),
            ),
            (
                "final",
                "recap",
                {
                    **_message(
                        "final",
                        "assistant",
                        _text("Yes, 2027 is prime."),
                        T3 + 6,
                        metadata={"model_slug": "gpt-5-thinking"},
                    ),
                    "channel": "final",
                },
            ),
        ]
    ),
    current="final",
)
PUZZLE["pinned_time"] = T3 + 100

CONVERSATIONS_JSON: list[dict[str, Any]] = [PUZZLE, CHART, TRIP]  # the newest first


@pytest.fixture
def store(tmp_path: Path) -> ChatStore:
    return ChatStore(tmp_path / "chats.sqlite3")


def _rich_conversation(store: ChatStore) -> int:
    """A conversation with everything an export must keep: branches with an older one shown,
    statuses, stats, settings, a pin and a name the user gave."""
    c = store.create_conversation("Poems", model="/m/q.gguf", system_prompt="Rhyme.")
    store.update_conversation(c.id, sampling={"temperature": 0.2, "version": 1})
    u = store.add_message(c.id, "user", "A poem about the sea 🌊")
    a1 = store.add_message(c.id, "assistant", "Waves\nand more waves", model="Q")
    store.update_message(a1.id, stats={"generated_tokens": 5, "stop_reason": "eos"})
    a2 = store.add_message(c.id, "assistant", "Salt —", "interrupted", "Q", parent_id=u.id)
    store.add_message(c.id, "user", "شكرا", parent_id=a2.id)
    failed = store.add_message(c.id, "assistant", "", "error", "Q")
    store.update_message(failed.id, error="the engine stopped")
    store.select(a1.id)
    store.add_message(c.id, "user", "Shorter?")
    store.pin_conversation(c.id)
    store.rename_conversation(c.id, "Sea poems")
    return c.id


def _content(data: dict[str, Any]) -> list[dict[str, Any]]:
    """An export without what is this database's own: ids become places in the list."""
    out = []
    for c in data["conversations"]:
        places = {m["id"]: i for i, m in enumerate(c["messages"])}
        messages = [
            {**m, "id": places[m["id"]], "parent_id": places.get(m["parent_id"])}
            for m in c["messages"]
        ]
        out.append({**c, "id": None, "messages": messages})
    return out


def test_export_then_import_round_trips_to_identical_content(tmp_path: Path) -> None:
    source = ChatStore(tmp_path / "a.sqlite3")
    _rich_conversation(source)
    plain = source.create_conversation("Plain")
    source.add_message(plain.id, "user", "hi")
    exported = source.export()
    assert (exported["format"], exported["version"]) == ("hearth-chats", 2)
    target = ChatStore(tmp_path / "b.sqlite3")
    result = target.import_conversations(parse_import(json.loads(json.dumps(exported))))
    assert (result.conversations, result.messages, result.skipped) == (2, 7, 0)
    again = target.export()
    assert _content(again) == _content(exported)
    # What the window shows is the same too: list order, shown path, versions, search.
    [a, b] = source.conversations(), target.conversations()
    assert [(c.title, c.pinned, c.title_edited) for c in a] == [
        (c.title, c.pinned, c.title_edited) for c in b
    ]
    shown = [(m.role, m.content, m.status) for m in target.messages(b[0].id)]
    assert shown == [(m.role, m.content, m.status) for m in source.messages(a[0].id)]
    assert shown[1][1] == "Waves\nand more waves"
    assert target.search("شكرا")[0].title == "Sea poems"


def test_importing_the_same_export_again_adds_nothing(tmp_path: Path, store: ChatStore) -> None:
    _rich_conversation(store)
    file = tmp_path / "export.json"
    file.write_text(json.dumps(store.export()), encoding="utf-8")
    result = store.import_conversations(read_import(file))  # into the database it came from
    assert (result.conversations, result.skipped) == (0, 1)
    other = ChatStore(tmp_path / "other.sqlite3")
    assert other.import_conversations(read_import(file)).conversations == 1
    assert other.import_conversations(read_import(file)).conversations == 0
    assert len(other.conversations()) == 1


def test_a_version_1_export_imports_once(tmp_path: Path, store: ChatStore) -> None:
    old = {
        "format": "hearth-chats",
        "version": 1,
        "conversations": [
            {
                "id": 7,
                "title": "Old export",
                "model": "m.gguf",
                "system_prompt": "",
                "created_at": 100.0,
                "updated_at": 120.0,
                "messages": [
                    {
                        "id": 1,
                        "parent_id": None,
                        "role": "user",
                        "content": "hello",
                        "status": "complete",
                        "error": None,
                        "model": "",
                        "stats": {},
                        "created_at": 100.0,
                    },
                    {
                        "id": 2,
                        "parent_id": 1,
                        "role": "assistant",
                        "content": "hi!",
                        "status": "streaming",
                        "error": None,
                        "model": "M",
                        "stats": {},
                        "created_at": 101.0,
                    },
                ],
            }
        ],
    }
    file = tmp_path / "v1.json"
    file.write_text(json.dumps(old))
    assert store.import_conversations(read_import(file)).messages == 2
    assert store.import_conversations(read_import(file)).skipped == 1
    [c] = store.conversations()
    assert [(m.content, m.status) for m in store.messages(c.id)] == [
        ("hello", "complete"),
        ("hi!", "interrupted"),  # a reply that was streaming when exported is not now
    ]


def test_markdown_shows_the_selected_path_and_marks_versions(store: ChatStore) -> None:
    cid = _rich_conversation(store)
    md = export_markdown(store.export([cid]))
    assert md.startswith("# Sea poems\n")
    assert "**Assistant** *(version 1 of 2)*:\n\nWaves\nand more waves" in md
    assert "Shorter?" in md
    assert "Salt" not in md  # the other branch is in the JSON, not in what is shown
    assert "> **System:** Rhyme." in md


def test_chatgpt_export_comes_over_as_it_was_shown(tmp_path: Path, store: ChatStore) -> None:
    file = tmp_path / "conversations.json"
    file.write_text(json.dumps(CONVERSATIONS_JSON), encoding="utf-8")
    result = store.import_conversations(read_import(file))
    assert (result.conversations, result.messages, result.skipped) == (3, 11, 0)
    by_title = {c.title: c for c in store.conversations()}
    trip = by_title["Lisbon weekend"]
    assert trip.system_prompt == "I live in Porto.\n\nAnswer briefly."  # custom instructions
    assert trip.uid == "chatgpt:6751a1c0-0000-800c-a000-000000000001"
    shown = store.messages(trip.id)
    # current_node picks the regenerated answer and the edited question.
    assert [(m.role, m.content) for m in shown] == [
        ("user", "Plan a weekend in Lisbon."),
        ("assistant", "Saturday: Belém. Sunday: Sintra."),
        ("user", "Where to eat fish?"),
        ("assistant", "Cais do Sodré."),
    ]
    assert shown[0].parent_id is None  # the hidden system nodes are gone, not empty messages
    assert shown[1].model == "gpt-4o"
    assert shown[3].stats == {"stop_reason": "length"}  # cut by ChatGPT's token limit
    assert store.siblings(shown[1].id).count == 2  # type: ignore[union-attr]
    assert store.siblings(shown[2].id).count == 2  # type: ignore[union-attr]
    assert shown[0].created_at == T1 + 1
    chart = by_title["Sales chart"]
    assert [(m.role, m.content) for m in store.messages(chart.id)] == [
        ("user", "[image]\n\nWhat is the total of this table?"),
        (
            "assistant",
            "```python\nprint(120 + 80)\n```\n\nOutput:\n```\n200\n```\n\nThe total is 200.",
        ),
    ]
    puzzle = by_title["Prime check"]
    assert [(m.role, m.content) for m in store.messages(puzzle.id)] == [
        ("user", "Is 2027 prime?"),
        ("assistant", "Yes, 2027 is prime."),
    ]
    assert [(c.title, c.pinned) for c in store.conversations()] == [
        ("Prime check", True),
        ("Sales chart", False),
        ("Lisbon weekend", False),
    ]
    again = store.import_conversations(read_import(file))
    assert (again.conversations, again.messages, again.skipped) == (0, 0, 3)


def test_chatgpt_zip_archive_and_a_single_conversation(tmp_path: Path, store: ChatStore) -> None:
    archive = tmp_path / "chatgpt-export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("chat.html", "<html></html>")
        z.writestr("conversations.json", json.dumps([TRIP]))
    assert store.import_conversations(read_import(archive)).conversations == 1
    [one] = parse_import(CHART)
    assert one.title == "Sales chart"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01 binary", "is not JSON"),
        (b'{"hello": 1}', "neither a Hearth export nor ChatGPT"),
        (b'{"format": "hearth-chats", "version": 99, "conversations": []}', "newer Hearth"),
        (b'{"format": "hearth-chats", "version": 2, "conversations": [{}]}', "no list of mes"),
        (
            b'{"format": "hearth-chats", "version": 2, "conversations": [{"messages": [{}]}]}',
            "without a role",
        ),
    ],
)
def test_files_that_cannot_be_imported_say_why(
    tmp_path: Path, store: ChatStore, content: bytes, message: str
) -> None:
    file = tmp_path / "bad.json"
    file.write_bytes(content)
    with pytest.raises(TransferError, match=message):
        store.import_conversations(read_import(file))
    assert store.conversations() == []
    with pytest.raises(TransferError, match="cannot be read"):
        read_import(tmp_path / "missing.json")
    bad_zip = tmp_path / "x.zip"
    with zipfile.ZipFile(bad_zip, "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(TransferError, match=r"without a conversations\.json"):
        read_import(bad_zip)

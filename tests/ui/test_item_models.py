from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pytestqt.modeltest import ModelTester

from app.chats.store import Conversation, Message
from app.context import AppContext
from ui.item_models import (
    ConversationListModel,
    LibraryRole,
    LibraryTableModel,
    MessageListModel,
    MessageRole,
)


def test_conversation_model(qtmodeltester: ModelTester) -> None:
    model = ConversationListModel()
    now = time.time()
    model.set_conversations([Conversation(i, f"Chat {i}", "", "", {}, now, now) for i in range(5)])
    qtmodeltester.check(model, force_py=True)
    assert model.row_of(3) == 3
    assert model.index(2).data() == "Chat 2"


def test_message_model_streaming_changes_one_row(qtmodeltester: ModelTester) -> None:
    model = MessageListModel()
    model.set_messages(
        [Message(1, 1, None, "user", "Hi"), Message(2, 1, 1, "assistant", "", "streaming")]
    )
    qtmodeltester.check(model, force_py=True)
    changes: list[tuple[int, int, list[int]]] = []
    model.dataChanged.connect(lambda a, b, roles: changes.append((a.row(), b.row(), list(roles))))
    model.append_text(1, "Hel")
    model.append_text(1, "lo")
    assert model.index(1).data(MessageRole.Content) == "Hello"
    assert changes == [(1, 1, [MessageRole.Content]), (1, 1, [MessageRole.Content])]
    model.update(1, status="complete", stats={"generated_tokens": 2})
    assert changes[-1] == (1, 1, [MessageRole.Status, MessageRole.Stats])
    model.append(Message(3, 1, 2, "user", "More"))
    qtmodeltester.check(model, force_py=True)


def test_library_model(qtmodeltester: ModelTester, make_model: Callable[..., Path]) -> None:
    ctx = AppContext.open()
    make_model("one.gguf", folder=ctx.paths.models_dir)
    (ctx.paths.models_dir / "broken.gguf").write_bytes(b"xx")
    model = LibraryTableModel()
    model.set_models(ctx.library.scan())
    qtmodeltester.check(model, force_py=True)
    names = [model.index(r, 0).data() for r in range(model.rowCount())]
    assert "one" in names
    assert "broken" in names
    broken = names.index("broken")
    assert "Unusable" in model.index(broken, 1).data()
    one = names.index("one")
    model.set_loaded(model.index(one, 0).data(LibraryRole.Path))
    assert model.index(one, 0).data().endswith("(loaded)")

"""Qt item models: thin adapters over plain lists of core objects."""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from PySide6.QtCore import (
    QAbstractListModel,
    QAbstractTableModel,
    QByteArray,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)

from app.chats.records import Siblings
from app.chats.store import Conversation, Message
from app.hub import SearchResult
from app.hub.recommended import Recommended
from app.library import LibraryEntry
from app.units import human_count, human_parameters, human_size

_Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()


def with_role_names(
    base: dict[int, QByteArray], names: Mapping[Any, bytes]
) -> dict[int, QByteArray]:
    """Qt's role names plus a model's own (``roleNames`` overrides)."""
    return {**base, **{int(role): QByteArray(name) for role, name in names.items()}}


class ConversationRole(enum.IntEnum):
    Id = Qt.ItemDataRole.UserRole + 1
    UpdatedAt = enum.auto()
    Replying = enum.auto()  # its reply is streaming
    Pinned = enum.auto()  # heads the list (a pin mark beside its title)


class ConversationListModel(QAbstractListModel):
    def __init__(self) -> None:
        super().__init__()
        self._items: list[Conversation] = []
        self._replying: int | None = None

    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        c = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            # Marked at the start: a long title is elided at its end.
            return f"● {c.title}" if c.id == self._replying else c.title
        if role == Qt.ItemDataRole.EditRole:
            return c.title
        if role == ConversationRole.Replying:
            return c.id == self._replying
        if role == ConversationRole.Pinned:
            return c.pinned
        if role == Qt.ItemDataRole.ToolTipRole:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated_at))
            state = ("Pinned · " if c.pinned else "") + (
                "Replying… · " if c.id == self._replying else ""
            )
            return f"{c.title}\n{state}{when}"
        if role == Qt.ItemDataRole.AccessibleTextRole:
            # The pin is drawn, not written: a screen reader says it.
            states = ["pinned"] * c.pinned + ["replying"] * (c.id == self._replying)
            return ", ".join([c.title, *states])
        if role == ConversationRole.Id:
            return c.id
        if role == ConversationRole.UpdatedAt:
            return c.updated_at
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        return with_role_names(
            super().roleNames(),
            {
                ConversationRole.Id: b"id",
                ConversationRole.UpdatedAt: b"updated",
                ConversationRole.Replying: b"replying",
                ConversationRole.Pinned: b"pinned",
            },
        )

    def set_conversations(self, items: list[Conversation], replying: int | None = None) -> None:
        """The conversations, pinned first, then newest; ``replying`` is the one whose reply
        streams."""
        self.beginResetModel()
        self._items = list(items)
        self._replying = replying
        self.endResetModel()

    def row_of(self, conversation_id: int) -> int:
        for i, c in enumerate(self._items):
            if c.id == conversation_id:
                return i
        return -1


class MessageRole(enum.IntEnum):
    Id = Qt.ItemDataRole.UserRole + 1
    Role = enum.auto()
    Content = enum.auto()
    Status = enum.auto()
    Error = enum.auto()
    Stats = enum.auto()
    Model = enum.auto()
    Siblings = enum.auto()  # its versions (Siblings), or None where it has no other


class MessageListModel(QAbstractListModel):
    """The messages of the conversation on screen: the shown branch of its tree."""

    def __init__(self) -> None:
        super().__init__()
        self._items: list[Message] = []
        self._siblings: dict[int, Siblings] = {}  # by message id, where count > 1

    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        m = self._items[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, MessageRole.Content):
            return m.content
        if role == MessageRole.Id:
            return m.id
        if role == MessageRole.Role:
            return m.role
        if role == MessageRole.Status:
            return m.status
        if role == MessageRole.Error:
            return m.error
        if role == MessageRole.Stats:
            return m.stats
        if role == MessageRole.Model:
            return m.model
        if role == MessageRole.Siblings:
            return self._siblings.get(m.id)
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        return with_role_names(
            super().roleNames(), {r: r.name.lower().encode() for r in MessageRole}
        )

    def set_messages(
        self, items: list[Message], siblings: dict[int, Siblings] | None = None
    ) -> None:
        """Show ``items``; ``siblings`` (``ChatStore.path_siblings``) gives the versions of
        those that have others."""
        self.beginResetModel()
        self._items = list(items)
        self._siblings = {k: v for k, v in (siblings or {}).items() if v.count > 1}
        self.endResetModel()

    def append(self, message: Message) -> int:
        row = len(self._items)
        self.beginInsertRows(_ROOT, row, row)
        self._items.append(message)
        self.endInsertRows()
        return row

    def message(self, row: int) -> Message:
        return self._items[row]

    def items(self) -> list[Message]:
        """Every message of the conversation (the view may show fewer)."""
        return list(self._items)

    def row_of(self, message_id: int) -> int:
        for i in range(len(self._items) - 1, -1, -1):
            if self._items[i].id == message_id:
                return i
        return -1

    def append_text(self, row: int, text: str) -> None:
        self._items[row].content += text
        idx = self.index(row)
        self.dataChanged.emit(idx, idx, [MessageRole.Content])

    def update(self, row: int, **changes: Any) -> None:
        m = self._items[row]
        roles = []
        for key, value in changes.items():
            setattr(m, key, value)
            roles.append(MessageRole[key.capitalize()])
        idx = self.index(row)
        self.dataChanged.emit(idx, idx, roles)


class LibraryRole(enum.IntEnum):
    Model = Qt.ItemDataRole.UserRole + 1
    Path = enum.auto()


class LibraryTableModel(QAbstractTableModel):
    COLUMNS = ("Name", "Architecture", "Parameters", "Quantization", "Size", "Context", "Source")
    _SOURCES: ClassVar[dict[str, str]] = {
        "hearth": "Hearth",
        "folder": "Your folder",
        "file": "Used in place",
        "starter": "Starter",
    }

    def __init__(self) -> None:
        super().__init__()
        self._items: list[LibraryEntry] = []
        self.loaded_path = ""

    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._items)

    def columnCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < len(self.COLUMNS)
        ):
            return self.COLUMNS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        m = self._items[index.row()]
        if role == LibraryRole.Model:
            return m
        if role == LibraryRole.Path:
            return str(m.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{m.path}\n{m.error}" if m.error else str(m.path)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._cell(m, index.column())
        if (
            role == Qt.ItemDataRole.FontRole
            and index.column() == 0
            and str(m.path) == self.loaded_path
        ):
            from PySide6.QtGui import QFont

            font = QFont()
            font.setBold(True)
            return font
        return None

    def _cell(self, m: LibraryEntry, column: int) -> str:
        i = m.info
        if column == 0:
            return m.name + ("  (loaded)" if str(m.path) == self.loaded_path else "")
        if i is None:
            return "Unusable: " + (m.error or "") if column == 1 else ""
        return [
            "",
            i.architecture,
            human_parameters(i.parameters),
            i.quantization,
            human_size(m.size_bytes),
            f"{i.context_length:,}" if i.context_length else "?",
            self._SOURCES.get(m.source, m.source) + (f" — {m.error}" if m.error else ""),
        ][column]

    def set_models(self, items: list[LibraryEntry]) -> None:
        self.beginResetModel()
        self._items = list(items)
        self.endResetModel()

    def set_loaded(self, path: str) -> None:
        self.loaded_path = path
        if self._items:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._items) - 1, 0))

    def model_at(self, row: int) -> LibraryEntry:
        return self._items[row]


class HubRole(enum.IntEnum):
    RepoId = Qt.ItemDataRole.UserRole + 1
    Subtitle = enum.auto()


@dataclass(frozen=True)
class HubRow:
    """One row of Discover: a search result or a recommended model."""

    repo_id: str
    title: str
    subtitle: str
    tooltip: str = ""


def search_row(r: SearchResult) -> HubRow:
    facts = [human_parameters(r.parameters) if r.parameters else "", r.architecture]
    facts += [f"↓ {human_count(r.downloads)}", f"♥ {human_count(r.likes)}"]
    if r.last_modified:
        facts.append(f"updated {r.last_modified[:10]}")
    if r.gated:
        facts.append("gated")
    return HubRow(r.repo_id, r.repo_id, " · ".join(f for f in facts if f))


def recommended_row(r: Recommended) -> HubRow:
    return HubRow(
        r.repo_id,
        r.title,
        f"{r.parameters} · {r.license} · {r.size} — {r.why}",
        f"{r.repo_id}\n{r.why}",
    )


class HubListModel(QAbstractListModel):
    def __init__(self) -> None:
        super().__init__()
        self._rows: list[HubRow] = []

    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return row.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.tooltip or row.subtitle
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{row.title}. {row.subtitle}"
        if role == HubRole.RepoId:
            return row.repo_id
        if role == HubRole.Subtitle:
            return row.subtitle
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        return with_role_names(
            super().roleNames(), {HubRole.RepoId: b"repoId", HubRole.Subtitle: b"subtitle"}
        )

    def set_rows(self, rows: list[HubRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def append_rows(self, rows: list[HubRow]) -> None:
        known = {r.repo_id for r in self._rows}
        rows = [r for r in rows if r.repo_id not in known]
        if not rows:
            return
        self.beginInsertRows(_ROOT, len(self._rows), len(self._rows) + len(rows) - 1)
        self._rows.extend(rows)
        self.endInsertRows()

    def row_of(self, repo_id: str) -> int:
        return next((i for i, r in enumerate(self._rows) if r.repo_id == repo_id), -1)

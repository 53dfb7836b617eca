"""Export and import of chats from the window: the file chosen in a dialog, the work on a
background thread with its own connection to the chats, the outcome said in one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from app.chats.store import ChatStore, ChatStoreError
from app.chats.transfer import (
    ImportResult,
    TransferError,
    export_markdown,
    import_summary,
    read_import,
)
from app.fileio import atomic_write_text
from ui.tasks import error_text, run_task

log = logging.getLogger(__name__)

MARKDOWN = "Markdown (*.md)"
HEARTH_JSON = "Hearth JSON, to import again (*.json)"
IMPORTABLE = "Hearth or ChatGPT export (*.json *.zip);;All files (*)"


def count(n: int, what: str) -> str:
    return f"{n:,} {what}{'s' if n != 1 else ''}"


def export_format(path: str, chosen_filter: str) -> tuple[Path, bool]:
    """Where to write and whether as Markdown: a typed .md or .json decides, else the filter
    chosen in the dialog (whose extension is added)."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix in (".md", ".markdown"):
        return target, True
    if suffix == ".json":
        return target, False
    markdown = chosen_filter == MARKDOWN
    return target.with_name(target.name + (".md" if markdown else ".json")), markdown


def export_chats(db: Path, target: Path, ids: list[int] | None, markdown: bool) -> int:
    """Write the conversations ``ids`` (None: all) to ``target``; how many were written.
    Runs on a worker thread, with its own connection."""
    store = ChatStore(db)
    try:
        data = store.export(ids)
    finally:
        store.close()
    text = (
        export_markdown(data)
        if markdown
        else json.dumps(data, indent=2, ensure_ascii=False) + "\n"  # as `hearth chats export`
    )
    try:
        atomic_write_text(target, text)
    except OSError as e:
        raise TransferError(f"{target} could not be written: {e.strerror or e}.") from None
    return len(data["conversations"])


def import_chats(db: Path, source: Path) -> ImportResult:
    """Read ``source`` and add what is new in it. Runs on a worker thread, with its own
    connection."""
    conversations = read_import(source)
    store = ChatStore(db)
    try:
        return store.import_conversations(conversations)
    finally:
        store.close()


def failure_text(error: Exception) -> str:
    if isinstance(error, TransferError | ChatStoreError):
        return str(error)
    return error_text(error)


class ChatTransfer(QObject):
    """Export one chat or all, import a file: each asks for the file, then works off the GUI
    thread, one job after another."""

    started = Signal(str)  # what is under way ("Importing conversations.json…")
    finished = Signal(str)  # how it went, in one line
    imported = Signal(object)  # ImportResult: the list shows what came in

    def __init__(self, db: Path, dialog_parent: QWidget) -> None:
        super().__init__(dialog_parent)
        self._db = db
        self._parent = dialog_parent
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._last_folder = str(Path.home())

    def export(self, ids: list[int] | None, name: str) -> None:
        """Ask where to write ``ids`` (None: every chat), suggesting ``name``, and write."""
        one = ids is not None and len(ids) == 1
        filters = f"{MARKDOWN};;{HEARTH_JSON}" if one else f"{HEARTH_JSON};;{MARKDOWN}"
        suggested = str(Path(self._last_folder) / _file_name(name))
        path, chosen = QFileDialog.getSaveFileName(
            self._parent, "Export chat" if one else "Export all chats", suggested, filters
        )
        if not path:
            return
        target, markdown = export_format(path, chosen)
        self._last_folder = str(target.parent)
        db = self._db
        self.started.emit(f"Exporting to {target.name}…")
        run_task(
            self.pool,
            lambda: export_chats(db, target, ids, markdown),
            lambda n: self.finished.emit(f"Exported {count(n, 'conversation')} to {target.name}."),
            self._failed,
            owner=self,
        )

    def import_file(self) -> None:
        """Ask for an export (Hearth's JSON, ChatGPT's conversations.json or its ZIP) and add it."""
        path, _chosen = QFileDialog.getOpenFileName(
            self._parent, "Import chats", self._last_folder, IMPORTABLE
        )
        if path:
            self.import_path(Path(path))

    def import_path(self, source: Path) -> None:
        self._last_folder = str(source.parent)
        db = self._db
        self.started.emit(f"Importing {source.name}…")
        run_task(
            self.pool,
            lambda: import_chats(db, source),
            lambda result: self._imported(result, source.name),
            self._failed,
            owner=self,
        )

    def _imported(self, result: ImportResult, name: str) -> None:
        self.imported.emit(result)
        self.finished.emit(import_summary(result, name))

    def _failed(self, error: Exception) -> None:
        log.warning("chat export or import failed: %s", error)
        self.finished.emit(failure_text(error))

    def wait(self) -> None:
        """Let a running export or import end (the window is closing)."""
        self.pool.waitForDone()


def _file_name(title: str) -> str:
    """A file name from a chat's title: no path separators or characters systems refuse."""
    cleaned = "".join("_" if ch in '<>:"/\\|?*' or ord(ch) < 32 else ch for ch in title)
    return " ".join(cleaned.split())[:80].strip(" .") or "chat"

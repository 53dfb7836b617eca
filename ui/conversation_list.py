"""The sidebar's conversations: the list (pinned first, then newest), search over every message,
pin, rename, delete with Undo, export and import.

The panel changes the chats through the store and says so by signals; the window decides what
the chat page shows (it owns which conversation is open and which one is replying).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRectF,
    QSize,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QAction,
    QColor,
    QIcon,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPainterPath,
    QPalette,
    QPixmap,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListView,
    QMenu,
    QStackedWidget,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chats.search import SearchHit
from app.chats.store import ChatStore, ChatStoreError, Conversation
from ui.chat_transfer import ChatTransfer
from ui.item_models import ConversationListModel, ConversationRole
from ui.notice_bar import NoticeBar
from ui.search_results import SearchField, SearchHitDelegate, SearchHitListModel, SearchHitRole
from ui.tasks import run_task

log = logging.getLogger(__name__)

UNDO_SECONDS = 8.0  # how long "Deleted … · Undo" is offered
# Searching waits this long after the last keystroke: fast typists start one search, not one
# per letter. The search itself runs on a worker (a common prefix over 6,000 messages takes
# 80-150 ms, far over a frame).
SEARCH_DELAY_MS = 150
SEARCH_LIMIT = 100

_Index = QModelIndex | QPersistentModelIndex


def search_chats(db: Path, text: str) -> list[SearchHit]:
    """The newest messages matching ``text``; runs on a worker with its own connection."""
    store = ChatStore(db)
    try:
        return store.search(text, order="newest", limit=SEARCH_LIMIT)
    finally:
        store.close()


def pin_icon(color: QColor, size: int = 14) -> QIcon:
    """A push pin, drawn (emoji fonts are not everywhere), tilted as pins lie."""
    scale = 2  # drawn large, shown small: crisp on high-density screens too
    pixmap = QPixmap(size * scale, size * scale)
    pixmap.setDevicePixelRatio(scale)
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.translate(size / 2, size / 2)
    p.rotate(40)
    p.translate(-size / 2, -size / 2)
    u = size / 14
    body = QPainterPath()
    body.addRoundedRect(QRectF(4.5 * u, 1 * u, 5 * u, 2 * u), u, u)  # the cap
    body.addRect(QRectF(5.5 * u, 3 * u, 3 * u, 4 * u))  # the barrel
    body.addRoundedRect(QRectF(3 * u, 7 * u, 8 * u, 1.8 * u), u, u)  # the collar
    p.fillPath(body, color)
    pen = p.pen()
    pen.setColor(color)
    pen.setWidthF(1.2 * u)
    p.setPen(pen)
    p.drawLine(QPointF(7 * u, 8.8 * u), QPointF(7 * u, 13.5 * u))  # the needle
    p.end()
    return QIcon(pixmap)


class ConversationDelegate(QStyledItemDelegate):
    """A conversation's title, and a pin at the right of pinned ones."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._icons: dict[int, QIcon] = {}

    def initStyleOption(self, option: QStyleOptionViewItem, index: _Index) -> None:
        super().initStyleOption(option, index)
        if not index.data(ConversationRole.Pinned):
            return
        color = option.palette.color(QPalette.ColorRole.PlaceholderText)
        icon = self._icons.get(color.rgba())
        if icon is None:
            icon = self._icons[color.rgba()] = pin_icon(color)
        option.icon = icon
        option.features |= QStyleOptionViewItem.ViewItemFeature.HasDecoration
        option.decorationSize = QSize(14, 14)
        option.decorationPosition = QStyleOptionViewItem.Position.Right


class ConversationPanel(QWidget):
    """Search, the list of conversations (or the search's hits), the Undo and notice bars."""

    open_requested = Signal(int)  # a conversation id
    hit_opened = Signal(int, int)  # a search hit: conversation id, message id
    trashed = Signal(int)  # moved to the trash (Undo offered): the window leaves it
    restored = Signal(int)  # Undo brought it back
    changed = Signal()  # the list changed here (pin, rename, import…): reload it

    def __init__(self, store: ChatStore, db: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self._db = db
        self.search_pool = QThreadPool(self)
        self.search_pool.setMaxThreadCount(1)
        self._search_request = 0  # answers of older searches are dropped
        self._undo_id: int | None = None  # the trashed conversation Undo would bring back
        self.transfer = ChatTransfer(db, self)
        self._build()
        self._connect()

    def _build(self) -> None:
        self.search = SearchField()
        self.search.setPlaceholderText("Search chats (Ctrl+F)")
        self.search.setAccessibleName("Search all chats")
        self.search.setToolTip("Search every message of every chat (Ctrl+F); Esc clears")
        self.search.setClearButtonEnabled(True)
        self.more = QToolButton()
        self.more.setText("⋯")
        self.more.setAccessibleName("Export or import chats")
        self.more.setToolTip("Export or import chats")
        self.more.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.more.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.more.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0; }")
        self.more_menu = QMenu(self.more)
        self.export_all_action = self.more_menu.addAction("Export all chats…")
        self.import_action = self.more_menu.addAction("Import chats…")
        self.more.setMenu(self.more_menu)

        self.model = ConversationListModel()
        self.view = QListView()
        self.view.setAccessibleName("Conversations")
        self.view.setModel(self.model)
        self.view.setItemDelegate(ConversationDelegate(self.view))
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.view.setUniformItemSizes(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)

        self.hits = SearchHitListModel()
        self.results = QListView()
        self.results.setAccessibleName("Search results")
        self.results.setModel(self.hits)
        self.results.setItemDelegate(SearchHitDelegate(self.results))
        self.results.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.results.setUniformItemSizes(True)
        self.results.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.results.installEventFilter(self)
        self.results_label = QLabel()
        self.results_label.setObjectName("searchSummary")
        self.results_label.setWordWrap(True)
        self.results_label.setStyleSheet("color: palette(placeholder-text); padding: 2px 4px;")
        results_page = QWidget()
        rl = QVBoxLayout(results_page)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.results_label)
        rl.addWidget(self.results, 1)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.view)
        self.stack.addWidget(results_page)

        self.undo_bar = NoticeBar("Undo delete")
        self.notice = NoticeBar("Notice")

        self.search_timer = QTimer(self)
        self.search_timer.setSingleShot(True)
        self.search_timer.setInterval(SEARCH_DELAY_MS)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.setSpacing(4)
        top.addWidget(self.search, 1)
        top.addWidget(self.more)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.undo_bar)
        layout.addWidget(self.notice)

        find = QAction("Search chats", self)
        find.setShortcut(QKeySequence(QKeySequence.StandardKey.Find))
        find.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        find.triggered.connect(self.focus_search)
        self.addAction(find)
        # On the list: Delete moves the chat to the trash (Undo offered), F2 renames it.
        for keys, slot in (
            (QKeySequence.StandardKey.Delete, self._trash_current),
            ("F2", self._rename_current),
        ):
            action = QAction(self.view)
            action.setShortcut(QKeySequence(keys))
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            action.triggered.connect(slot)
            self.view.addAction(action)

    def _connect(self) -> None:
        self.search.textChanged.connect(self._on_search_text)
        self.search.down.connect(self._to_results)
        self.search.submitted.connect(self._open_current_hit)
        self.search_timer.timeout.connect(self._run_search)
        self.view.clicked.connect(self._on_conversation_activated)
        # Enter on the highlighted chat opens it (arrows alone only move the highlight).
        self.view.activated.connect(self._on_conversation_activated)
        self.view.customContextMenuRequested.connect(self._conversation_menu)
        self.results.clicked.connect(self._open_hit)
        self.results.activated.connect(self._open_hit)
        self.export_all_action.triggered.connect(self.export_all)
        self.import_action.triggered.connect(self.transfer.import_file)
        self.undo_bar.action_triggered.connect(self.undo_delete)
        self.undo_bar.ended.connect(self.end_undo_offer)
        self.transfer.started.connect(self._say_until_done)
        self.transfer.finished.connect(self._say)
        self.transfer.imported.connect(self._on_imported)

    # the list

    def show_conversations(
        self, items: list[Conversation], current: int | None, replying: int | None
    ) -> None:
        """List ``items``, highlight the one shown (``current``); ``replying`` is marked."""
        self.model.set_conversations(items, replying=replying)
        row = self.model.row_of(current) if current is not None else -1
        if row >= 0:
            self.view.setCurrentIndex(self.model.index(row))
        else:
            self.view.clearSelection()
        if self.search.text().strip():
            self.search_timer.start()  # a message or a chat may have come or gone

    def clear_selection(self) -> None:
        self.view.clearSelection()

    @Slot(QModelIndex)
    def _on_conversation_activated(self, index: QModelIndex) -> None:
        self.open_requested.emit(index.data(ConversationRole.Id))

    @Slot(QPoint)
    def _conversation_menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():  # the menu key: the highlighted chat
            index = self.view.currentIndex()
            if not index.isValid():
                return
            pos = self.view.visualRect(index).center()
        menu = self.conversation_menu(index)
        menu.exec(self.view.viewport().mapToGlobal(pos))
        menu.deleteLater()  # its chosen action has run

    def conversation_menu(self, index: QModelIndex) -> QMenu:
        """What can be done to the chat at ``index`` (shown on a right click)."""
        conversation_id: int = index.data(ConversationRole.Id)
        title: str = index.data(Qt.ItemDataRole.EditRole)
        pinned = bool(index.data(ConversationRole.Pinned))
        menu = QMenu(self)
        menu.setAccessibleName(f"Actions for “{title}”")
        menu.addAction("Unpin" if pinned else "Pin to the top").triggered.connect(
            lambda: self.pin(conversation_id, not pinned)
        )
        rename = menu.addAction("Rename…")
        rename.setShortcut(QKeySequence("F2"))
        rename.triggered.connect(lambda: self.ask_rename(conversation_id, title))
        menu.addAction("Export…").triggered.connect(
            lambda: self.transfer.export([conversation_id], title)
        )
        menu.addSeparator()
        delete = menu.addAction("Delete")
        delete.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        delete.triggered.connect(lambda: self.trash(conversation_id))
        return menu

    def pin(self, conversation_id: int, pinned: bool = True) -> None:
        try:
            self.store.pin_conversation(conversation_id, pinned)
        except ChatStoreError as e:
            self._say(str(e))
        self.changed.emit()

    def ask_rename(self, conversation_id: int, title: str) -> None:
        new, ok = QInputDialog.getText(
            self, "Rename chat", "Title (empty: from the first message):", text=title
        )
        if ok:
            self.rename(conversation_id, new)

    def rename(self, conversation_id: int, title: str) -> None:
        try:
            self.store.rename_conversation(conversation_id, title)
        except ChatStoreError as e:
            self._say(str(e))
        self.changed.emit()

    @Slot()
    def _trash_current(self) -> None:
        index = self.view.currentIndex()
        if index.isValid():
            self.trash(index.data(ConversationRole.Id))

    @Slot()
    def _rename_current(self) -> None:
        index = self.view.currentIndex()
        if index.isValid():
            self.ask_rename(index.data(ConversationRole.Id), index.data(Qt.ItemDataRole.EditRole))

    # delete with Undo

    def trash(self, conversation_id: int) -> None:
        """Move the conversation to the trash and offer Undo for a while."""
        conversation = self.store.conversation(conversation_id)
        if conversation is None:
            return
        self.end_undo_offer()  # one offer at a time: an earlier delete becomes final
        try:
            self.store.trash_conversation(conversation_id)
        except ChatStoreError as e:
            self._say(str(e))
            return
        self._undo_id = conversation_id
        self.undo_bar.show_notice("Deleted “{name}”", "Undo", UNDO_SECONDS, conversation.title)
        self.trashed.emit(conversation_id)

    @Slot()
    def undo_delete(self) -> None:
        conversation_id, self._undo_id = self._undo_id, None
        if conversation_id is None:
            return
        try:
            back = self.store.restore_conversation(conversation_id)
        except ChatStoreError as e:
            self._say(str(e))
            return
        if back:
            self.restored.emit(conversation_id)

    @Slot()
    def end_undo_offer(self) -> None:
        """The offer is over (its time ran out, it was closed, another delete, the window
        closes): what it held is deleted for good."""
        self.undo_bar.timer.stop()
        self.undo_bar.hide()
        if self._undo_id is None:
            return
        self._undo_id = None
        try:
            self.store.empty_trash()
        except ChatStoreError as e:  # left for the next start's housekeeping
            log.warning("could not empty the trash: %s", e)

    # search

    @Slot()
    def focus_search(self) -> None:
        """Ctrl+F: to the search box, its text selected to type over."""
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    @Slot(str)
    def _on_search_text(self, text: str) -> None:
        if not text.strip():
            self.search_timer.stop()
            self._search_request += 1  # a search still running is no longer wanted
            self.hits.set_hits([])
            self.stack.setCurrentIndex(0)
            return
        if self.stack.currentIndex() == 0:
            self.results_label.setText("Searching…")
            self.stack.setCurrentIndex(1)
        self.search_timer.start()

    @Slot()
    def _run_search(self) -> None:
        text = self.search.text().strip()
        if not text:
            return
        self._search_request += 1
        request, db = self._search_request, self._db
        run_task(
            self.search_pool,
            lambda: search_chats(db, text),
            lambda hits: self._found(request, text, hits),
            lambda error: self._search_failed(request, error),
            owner=self,
        )

    def _found(self, request: int, text: str, hits: list[SearchHit]) -> None:
        if request != self._search_request:
            return  # typed on since: a newer search is coming
        current = self.results.currentIndex().row()
        self.hits.set_hits(hits)
        if not hits:
            self.results_label.setText(f"No message mentions “{text}”.")
        elif len(hits) >= SEARCH_LIMIT:
            self.results_label.setText(f"The {len(hits)} newest messages with “{text}”:")
        else:
            found = f"{len(hits)} message{'s' if len(hits) != 1 else ''}"
            self.results_label.setText(f"{found} with “{text}”:")
        self.results_label.setAccessibleName(self.results_label.text())
        if hits:
            self.results.setCurrentIndex(self.hits.index(min(max(current, 0), len(hits) - 1)))

    def _search_failed(self, request: int, error: Exception) -> None:
        if request == self._search_request:
            log.warning("search failed: %s", error)
            self.hits.set_hits([])
            self.results_label.setText(f"Search failed: {error}")

    @Slot()
    def _to_results(self) -> None:
        if self.stack.currentIndex() == 1 and self.hits.rowCount():
            self.results.setFocus()
            if not self.results.currentIndex().isValid():
                self.results.setCurrentIndex(self.hits.index(0))
        elif self.stack.currentIndex() == 0 and self.model.rowCount():
            self.view.setFocus()

    @Slot()
    def _open_current_hit(self) -> None:
        index = self.results.currentIndex()
        if not index.isValid() and self.hits.rowCount():
            index = self.hits.index(0)
        if index.isValid():
            self._open_hit(index)

    @Slot(QModelIndex)
    def _open_hit(self, index: QModelIndex) -> None:
        self.hit_opened.emit(
            index.data(SearchHitRole.ConversationId), index.data(SearchHitRole.MessageId)
        )

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # Esc in the results: back to the list, as in the search box.
        if (
            watched is self.results
            and event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Escape
        ):
            self.search.clear()
            self.search.setFocus()
            return True
        return super().eventFilter(watched, event)

    # export and import

    @Slot()
    def export_all(self) -> None:
        self.transfer.export(None, "Hearth chats")

    @Slot(str)
    def _say_until_done(self, text: str) -> None:
        self.notice.show_notice(text, seconds=0)

    @Slot(str)
    def _say(self, text: str) -> None:
        self.notice.show_notice(text)

    @Slot(object)
    def _on_imported(self, _result: object) -> None:
        self.changed.emit()

    def shutdown(self) -> None:
        """The window closes: the Undo offer ends, background work finishes."""
        self.end_undo_offer()
        self.search_timer.stop()
        self._search_request += 1
        self.transfer.wait()
        self.search_pool.waitForDone()

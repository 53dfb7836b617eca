"""The main window: a sidebar of conversations and pages; it only assembles and wires them."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, QThreadPool, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import connections
from app.chats.store import ChatStore
from app.context import AppContext
from app.downloads import DownloadManager, JobView, State
from app.hub import RemoteModel
from app.library import LibraryEntry
from app.secrets import get_token
from ui.chat_page import ChatPage
from ui.conversation_list import ConversationPanel
from ui.discover_page import DiscoverPage
from ui.downloads_page import DownloadsController, DownloadsPage
from ui.engine_controller import EngineController
from ui.local_server import LocalServer
from ui.models_page import ModelsPage
from ui.settings_page import SettingsPage
from ui.tasks import error_text, run_task
from ui.theme import TEXT_SIZES, apply_text_size, apply_theme, text_size

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    CHAT, DISCOVER, DOWNLOADS, MODELS, SETTINGS = range(5)

    # The library as last scanned (list[LibraryEntry]): every screen that lists models observes
    # it, instead of the window handing each the list.
    library_changed = Signal(object)

    def __init__(
        self,
        ctx: AppContext,
        store: ChatStore,
        engine: EngineController,
        server: LocalServer | None = None,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        ctx.on_save_error = self._settings_not_saved
        self._said_not_saved = ""
        self.store = store
        self.engine = engine
        self.server = server  # the API server on the window's engine (Settings → Local server)
        # Library work (scans, copies, deletes) runs on one background thread, in order.
        self.library_pool = QThreadPool(self)
        self.library_pool.setMaxThreadCount(1)
        # Asking connections for their models (the network) runs apart from library work.
        self.remote_pool = QThreadPool(self)
        self.remote_pool.setMaxThreadCount(1)
        self._shown_when_trashed = False  # the chat deleted last was the one shown
        self.setWindowTitle("Hearth")
        self.resize(1180, 760)
        if ctx.settings.window_geometry:  # where the user left it (Qt keeps it on a screen)
            self.restoreGeometry(QByteArray.fromBase64(ctx.settings.window_geometry.encode()))
        self._build_pages()
        central = QWidget()
        cl = QHBoxLayout(central)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        cl.addWidget(self._build_sidebar())
        cl.addWidget(self.pages, 1)
        self.setCentralWidget(central)
        self._add_shortcuts()
        self._connect_pages()
        self.reload_conversations()
        self.new_chat()
        self.refresh_library()
        self.refresh_remote_models()
        self.downloads.start()  # the queue from last time resumes

    def _build_pages(self) -> None:
        ctx, engine = self.ctx, self.engine
        self.chat_page = ChatPage(ctx, self.store, engine)
        self.models_page = ModelsPage(ctx.paths.models_dir, engine)
        self.settings_page = SettingsPage(ctx.settings, ctx.library, self.server)
        self.discover_page = DiscoverPage(get_token, ctx.estimate_context())
        self.downloads_page = DownloadsPage(ctx.settings.download_concurrency)
        self.downloads = DownloadsController(
            DownloadManager(
                ctx.paths.models_dir,
                ctx.paths.partial_dir,
                ctx.paths.downloads_file,
                token=get_token,
                concurrency=ctx.settings.download_concurrency,
            ),
            self,
        )
        self.pages = QStackedWidget()
        for page in (
            self.chat_page,
            self.discover_page,
            self.downloads_page,
            self.models_page,
            self.settings_page,
        ):
            self.pages.addWidget(page)

    def _build_sidebar(self) -> QWidget:
        """Title, New chat, the conversations (ui/conversation_list.py), and the page buttons."""
        panel = ConversationPanel(self.store, self.ctx.paths.chats_db)
        self.conversation_panel = panel
        self.conversations = panel.model  # the list's model and view, as tests and pages see them
        self.conversation_list = panel.view
        panel.open_requested.connect(self.open_conversation)
        panel.hit_opened.connect(self.open_message)
        panel.trashed.connect(self._on_conversation_trashed)
        panel.restored.connect(self._on_conversation_restored)
        panel.changed.connect(self.reload_conversations)
        new_chat = QPushButton("+  New chat")
        new_chat.setToolTip("New chat (Ctrl+N)")
        new_chat.clicked.connect(self.new_chat)
        title = QLabel("Hearth")
        title.setObjectName("appTitle")
        self.nav = QButtonGroup(self)
        nav_layout = QVBoxLayout()
        for i, label in enumerate(("Chat", "Discover", "Downloads", "Models", "Settings")):
            b = QPushButton(label)
            b.setObjectName("navButton")
            b.setCheckable(True)
            self.nav.addButton(b, i)
            nav_layout.addWidget(b)
        self.nav.idClicked.connect(self.show_page)
        self.nav.button(0).setChecked(True)

        sidebar = QWidget()
        sidebar.setObjectName("sidebar")
        sidebar.setFixedWidth(250)
        sl = QVBoxLayout(sidebar)
        sl.setContentsMargins(10, 10, 10, 10)
        sl.addWidget(title)
        sl.addWidget(new_chat)
        sl.addWidget(panel, 1)
        sl.addLayout(nav_layout)
        # While the API server is on, the window says so (and where), whatever page is shown.
        self.server_status = QPushButton()
        self.server_status.setObjectName("serverStatus")
        self.server_status.setFlat(True)
        self.server_status.setToolTip("The local API server (Settings → Local server)")
        self.server_status.clicked.connect(lambda: self.show_page(self.SETTINGS))
        self.server_status.hide()
        sl.addWidget(self.server_status)
        if self.server is not None:
            self.server.changed.connect(self._show_server_status)
            self._show_server_status()
        return sidebar

    @Slot()
    def _show_server_status(self) -> None:
        server = self.server
        if server is None or not (server.running or server.error):
            self.server_status.hide()
            return
        if server.running and self.ctx.settings.server_save_chats:
            self.reload_conversations()  # requests are saved as chats: show them
        if server.running:
            port = server.url.rsplit(":", 1)[-1].split("/")[0]
            n = server.requests_served
            text = f"● API server on :{port} · {n} request{'s' if n != 1 else ''}"
        else:
            text = "API server not running — see Settings"
        self.server_status.setText(text)
        self.server_status.show()

    def _add_shortcuts(self) -> None:
        """Ctrl+N a new chat, Ctrl+K search the Hub, Ctrl+, Settings, Ctrl+Q quit, Ctrl+Shift+C
        copy the last reply."""
        for label, keys, act in (
            ("New chat", QKeySequence(QKeySequence.StandardKey.New), self.new_chat),
            ("Search models", QKeySequence("Ctrl+K"), lambda: self.show_page(self.DISCOVER)),
            ("Settings", QKeySequence("Ctrl+,"), lambda: self.show_page(self.SETTINGS)),
            ("Quit", QKeySequence("Ctrl+Q"), self.close),
            ("Copy the last reply", QKeySequence("Ctrl+Shift+C"), self.chat_page.copy_last_reply),
            ("Larger text", QKeySequence(QKeySequence.StandardKey.ZoomIn), self.zoom_in),
            ("Larger text", QKeySequence("Ctrl+="), self.zoom_in),
            ("Smaller text", QKeySequence(QKeySequence.StandardKey.ZoomOut), self.zoom_out),
            ("Text at its usual size", QKeySequence("Ctrl+0"), self.zoom_reset),
            ("About Hearth", QKeySequence(QKeySequence.StandardKey.HelpContents), self.show_about),
        ):
            action = QAction(label, self)
            action.setShortcut(keys)
            action.triggered.connect(act)
            self.addAction(action)

    @Slot()
    def show_about(self) -> None:
        """F1, or Settings → This computer → About Hearth."""
        from ui.about_dialog import AboutDialog

        dialog = AboutDialog(self)
        dialog.setModal(True)
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()
        self.about_dialog = dialog

    def _connect_pages(self) -> None:
        """What each page asks for, and what each observes."""
        engine = self.engine
        self.library_changed.connect(self.models_page.set_models)
        self.library_changed.connect(self.chat_page.set_models)
        self.chat_page.conversation_created.connect(self._on_conversation_created)
        self.chat_page.conversation_changed.connect(self._on_conversation_changed)
        self.models_page.refresh_requested.connect(self.refresh_library)
        self.models_page.load_requested.connect(self._load_model)
        self.models_page.unload_requested.connect(engine.unload)
        self.models_page.add_file_requested.connect(self.add_model_file)
        self.models_page.add_folder_requested.connect(self.settings_page.add_folder)
        self.models_page.delete_requested.connect(self.delete_model)
        self.settings_page.changed.connect(self.ctx.save_settings)
        self.settings_page.folders_changed.connect(self.refresh_library)
        self.settings_page.theme_changed.connect(self._apply_theme)
        self.settings_page.engine_settings_changed.connect(self._engine_settings_changed)
        self.settings_page.offline_changed.connect(self._offline_changed)
        self.settings_page.offline_changed.connect(self.refresh_remote_models)
        self.settings_page.connections_changed.connect(self.refresh_remote_models)
        self.settings_page.hardware_panel.about_requested.connect(self.show_about)
        self.discover_page.download_requested.connect(self.download)
        self.discover_page.open_downloads.connect(lambda: self.show_page(self.DOWNLOADS))
        self.downloads_page.discover_requested.connect(lambda: self.show_page(self.DISCOVER))
        self.downloads_page.pause_requested.connect(self.downloads.pause)
        self.downloads_page.resume_requested.connect(self.downloads.resume)
        self.downloads_page.cancel_requested.connect(self.downloads.cancel)
        self.downloads_page.remove_requested.connect(self.downloads.cancel)
        self.downloads_page.clear_finished_requested.connect(self.downloads.clear_finished)
        self.downloads_page.concurrency_changed.connect(self._concurrency_changed)
        self.downloads_page.chat_requested.connect(self.chat_with)
        self.downloads.changed.connect(self._on_downloads_changed)
        self.downloads.finished.connect(self._on_download_finished)
        engine.model_load_failed.connect(self._on_model_load_failed)

    def _settings_not_saved(self, message: str) -> None:
        """Once per kind of failure: a full disk must not bring a dialog at every keystroke."""
        log.error("%s", message)
        if message != self._said_not_saved:
            self._said_not_saved = message
            box = QMessageBox(QMessageBox.Icon.Warning, "Settings not saved", message, parent=self)
            box.open()  # not modal to the app: settings keep working

    @Slot()
    def refresh_remote_models(self) -> None:
        """Ask each connection for its models, in the background; the chat's picker lists them."""
        if not self.ctx.settings.connections:
            self._remote_models_found([])
            return
        settings = self.ctx.settings
        run_task(
            self.remote_pool,
            lambda: connections.list_models(settings),
            self._remote_models_found,
            lambda e: log.error("asking connections for models failed: %s", e),
        )

    def _remote_models_found(self, found: list[connections.RemoteModels]) -> None:
        self.chat_page.set_remote_models([m for r in found for m in r.models])
        self.settings_page.connections_box.show_states(found)

    # pages

    @Slot(int)
    def show_page(self, index: int) -> None:
        self.pages.setCurrentIndex(index)
        self.nav.button(index).setChecked(True)
        if index == self.CHAT:
            self.chat_page.input.setFocus()
        elif index == self.DISCOVER:
            self.discover_page.query.setFocus()

    # conversations

    @Slot()
    def reload_conversations(self) -> None:
        current = self.chat_page.conversation
        self.conversation_panel.show_conversations(
            self.store.conversations(),
            current.id if current else None,
            self.chat_page.replying_conversation(),
        )

    @Slot()
    def new_chat(self) -> None:
        self.chat_page.open_conversation(None)
        self.conversation_panel.clear_selection()
        self.show_page(self.CHAT)

    @Slot(int)
    def open_conversation(self, conversation_id: int) -> None:
        self.chat_page.open_conversation(conversation_id)
        self.reload_conversations()
        self.show_page(self.CHAT)

    @Slot(int, int)
    def open_message(self, conversation_id: int, message_id: int) -> None:
        """Open a conversation at one of its messages (a search hit), on the branch holding it."""
        self.show_page(self.CHAT)  # shown first: the page scrolls to the message laid out
        self.chat_page.reveal_message(message_id)  # its version selected, scrolled to, marked
        self.reload_conversations()

    @Slot(int)
    def _on_conversation_created(self, _conversation_id: int) -> None:
        self.reload_conversations()

    @Slot(int)
    def _on_conversation_changed(self, _conversation_id: int) -> None:
        self.reload_conversations()

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self.conversation_panel.rename(conversation_id, title)

    def delete_conversation(self, conversation_id: int) -> None:
        """To the trash, with Undo offered for a while (then deleted for good)."""
        self.conversation_panel.trash(conversation_id)

    @Slot(int)
    def _on_conversation_trashed(self, conversation_id: int) -> None:
        if self.chat_page.replying_conversation() == conversation_id:
            self.engine.stop()
        current = self.chat_page.conversation
        self._shown_when_trashed = current is not None and current.id == conversation_id
        if self._shown_when_trashed:
            self.chat_page.open_conversation(None)
        self.reload_conversations()

    @Slot(int)
    def _on_conversation_restored(self, conversation_id: int) -> None:
        if self._shown_when_trashed:  # Undo shows it again where it was
            self.open_conversation(conversation_id)
        else:
            self.reload_conversations()

    # library

    @Slot()
    def refresh_library(self) -> None:
        run_task(self.library_pool, self.ctx.library.scan, self._on_library, self._on_library_error)

    def _on_library(self, models: list[LibraryEntry]) -> None:
        self.library_changed.emit(models)

    def _on_library_error(self, error: Exception) -> None:
        log.error("library scan failed: %s", error)
        QMessageBox.warning(self, "Models", f"Could not list the models: {error}")

    @Slot(str, bool)
    def add_model_file(self, path: str, copy: bool) -> None:
        run_task(
            self.library_pool,
            lambda: self.ctx.library.add(Path(path), copy=copy),
            lambda _model: self.refresh_library(),
            self._library_failed,
            owner=self,
        )

    @Slot(object)
    def delete_model(self, model: LibraryEntry) -> None:
        if str(model.path) in (self.engine.loaded_path, self.engine.loading_path):
            self.engine.unload()
        run_task(
            self.library_pool,
            lambda: self.ctx.library.delete(model),
            lambda _none: self.refresh_library(),
            self._library_failed,
            owner=self,
        )

    def _library_failed(self, error: Exception) -> None:
        QMessageBox.warning(self, "Models", error_text(error))
        self.refresh_library()

    @Slot(str)
    def _load_model(self, path: str) -> None:
        self.chat_page.choose_model(path)

    @Slot(str, str)
    def _on_model_load_failed(self, path: str, message: str) -> None:
        if self.pages.currentWidget() is self.models_page:
            QMessageBox.warning(self, "Could not load the model", message)

    # downloads

    @Slot(object)
    def download(self, model: RemoteModel) -> None:
        self.downloads.add(model)

    @Slot(object)
    def _on_downloads_changed(self, jobs: list[JobView]) -> None:
        self.downloads_page.set_jobs(jobs)
        self.discover_page.set_jobs(jobs)
        running = sum(j.state in (State.ACTIVE, State.QUEUED) for j in jobs)
        self.nav.button(self.DOWNLOADS).setText(
            f"Downloads ({running})" if running else "Downloads"
        )

    @Slot(object)
    def _on_download_finished(self, _job: JobView) -> None:
        self.refresh_library()  # the new model can be chatted with at once

    @Slot(str)
    def chat_with(self, path: str) -> None:
        """A new chat with the model at ``path`` (e.g. one just downloaded)."""
        self.new_chat()
        self.chat_page.choose_model(path)
        self.refresh_library()

    @Slot(int)
    def _concurrency_changed(self, n: int) -> None:
        self.ctx.settings.download_concurrency = n
        self.ctx.save_settings()
        self.downloads.set_concurrency(n)

    @Slot(bool)
    def _offline_changed(self, offline: bool) -> None:
        self.discover_page.refresh_offline()
        if not offline:
            self.downloads.kick()

    @Slot()
    def _engine_settings_changed(self) -> None:
        self.discover_page.set_context_length(self.ctx.estimate_context())
        if self.engine.loaded_path and not self.engine.generating:
            self.chat_page.reload_model()  # automatic values worked out again

    @Slot()
    def zoom_in(self) -> None:
        """Ctrl+plus: larger text everywhere, remembered."""
        self._zoom(+1)

    @Slot()
    def zoom_out(self) -> None:
        """Ctrl+minus: smaller text everywhere, remembered."""
        self._zoom(-1)

    @Slot()
    def zoom_reset(self) -> None:
        """Ctrl+0: the system's text size again."""
        self._set_text_size(0)

    def _zoom(self, step: int) -> None:
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        if isinstance(app, QApplication):
            low, high = TEXT_SIZES
            self._set_text_size(min(high, max(low, round(text_size(app)) + step)))

    def _set_text_size(self, points: int) -> None:
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_text_size(app, points)
        self.ctx.settings.text_size = points
        self.ctx.save_settings()

    @Slot(str)
    def _apply_theme(self, theme: str) -> None:
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, theme)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.ctx.settings.window_geometry = bytes(self.saveGeometry().toBase64().data()).decode()
        self.settings_page.flush()  # a change still settling is saved
        self.ctx.save_settings()
        self.chat_page._flush()
        self.conversation_panel.shutdown()  # a chat deleted with Undo still offered goes for good
        self.downloads.shutdown()  # running downloads resume at the next start
        self.library_pool.waitForDone()
        self.remote_pool.waitForDone(3000)
        # Python must not be torn down under a task still running: the keyring check at startup
        # takes ~0.3 s (longer if the keyring asks to be unlocked, hence the bound).
        self.settings_page.pool.waitForDone(3000)
        super().closeEvent(event)

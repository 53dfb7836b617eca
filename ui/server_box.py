"""Settings → Local server: the OpenAI-compatible API server's switch, address and key."""

from __future__ import annotations

import secrets as random_tokens

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from app import secrets
from app.settings import RANGES
from ui.local_server import ANY_ADDRESS, LOOPBACK, LocalServer


class ServerBox(QGroupBox):
    changed = Signal()  # a setting changed: the window saves

    def __init__(self, server: LocalServer, parent: QWidget | None = None) -> None:
        super().__init__("Local server (OpenAI-compatible API)", parent)
        self.server = server
        s = server.ctx.settings
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.enabled = QCheckBox("Serve the library's models to other apps on this computer")
        self.enabled.setChecked(s.server_enabled)
        self.enabled.setToolTip(
            "Editors, scripts and agents that speak OpenAI's API can use your models. Requests "
            "and your chats take turns on the engine; requests are not saved as chats."
        )
        self.port = QSpinBox()
        self.port.setRange(*RANGES["server_port"])
        self.port.setValue(s.server_port)
        self.port.setAccessibleName("Server port")
        self.network = QCheckBox("Also accept other devices on the network (needs an API key)")
        self.network.setChecked(s.server_host != LOOPBACK)
        self.idle = QSpinBox()
        self.idle.setRange(*RANGES["server_idle_minutes"])
        self.idle.setSuffix(" min")
        self.idle.setSpecialValueText("never")
        self.idle.setValue(s.server_idle_minutes)
        self.idle.setToolTip(
            "A model no request used for this long is unloaded (not if a chat uses it)."
        )
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("optional on this computer only")
        self.key.setAccessibleName("API key of the local server")
        self.key.setMinimumWidth(260)
        generate = QPushButton("New key")
        generate.setToolTip("Make a random key, keep it in the system keyring and copy it")
        generate.clicked.connect(self._new_key)
        self.remove_key = QPushButton("Remove")
        self.remove_key.clicked.connect(self._remove_key)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addWidget(generate)
        key_row.addWidget(self.remove_key)
        self.cors = QCheckBox("Let web pages of other sites call it (CORS)")
        self.cors.setChecked(s.server_cors)
        self.save_chats = QCheckBox("Keep requests and their replies as chats")
        self.save_chats.setChecked(s.server_save_chats)
        self.status = QLabel()
        self.status.setObjectName("librarySummary")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setMinimumWidth(420)
        form.addRow(self.enabled)
        form.addRow("Port", self.port)
        form.addRow(self.network)
        form.addRow("API key", key_row)
        form.addRow("Unload after", self.idle)
        form.addRow(self.cors)
        form.addRow(self.save_chats)
        form.addRow("", self.status)
        self.key.setText(server.api_key())
        self._show_key_state()
        self.enabled.toggled.connect(self._switched)
        self.network.toggled.connect(self._restart_with_changes)
        self.cors.toggled.connect(self._restart_with_changes)
        self.save_chats.toggled.connect(self._restart_with_changes)
        self.port.editingFinished.connect(self._restart_with_changes)
        self.idle.editingFinished.connect(self._restart_with_changes)
        self.key.editingFinished.connect(self._key_edited)
        server.changed.connect(self.show_status)
        self.show_status()

    def _read(self) -> None:
        s = self.server.ctx.settings
        s.server_enabled = self.enabled.isChecked()
        s.server_port = self.port.value()
        s.server_host = ANY_ADDRESS if self.network.isChecked() else LOOPBACK
        s.server_idle_minutes = self.idle.value()
        s.server_cors = self.cors.isChecked()
        s.server_save_chats = self.save_chats.isChecked()

    @Slot(bool)
    def _switched(self, on: bool) -> None:
        self._read()
        self.changed.emit()
        if on:
            self.server.start()
        else:
            self.server.stop()
        self.show_status()

    @Slot()
    def _restart_with_changes(self) -> None:
        s = self.server.ctx.settings

        def options() -> tuple[object, ...]:
            return (
                s.server_port,
                s.server_host,
                s.server_idle_minutes,
                s.server_cors,
                s.server_save_chats,
            )

        before = options()
        self._read()
        if before == options():
            return
        self.changed.emit()
        if s.server_enabled:
            self.server.start()  # again, with the new address or options
        self.show_status()

    def _store_key(self, key: str) -> None:
        if key:
            secrets.set_secret(secrets.SERVER_KEY, key)
        else:
            secrets.delete_secret(secrets.SERVER_KEY)
        self._show_key_state()
        if self.server.ctx.settings.server_enabled:
            self.server.start()

    @Slot()
    def _key_edited(self) -> None:
        if self.key.text().strip() != self.server.api_key():
            self._store_key(self.key.text().strip())

    @Slot()
    def _new_key(self) -> None:
        key = "hearth-" + random_tokens.token_urlsafe(24)
        self.key.setText(key)
        QGuiApplication.clipboard().setText(key)
        self._store_key(key)
        self.status.setText(self.status.text() + "<br>The new key is copied to the clipboard.")

    @Slot()
    def _remove_key(self) -> None:
        self.key.clear()
        self._store_key("")

    def _show_key_state(self) -> None:
        self.remove_key.setEnabled(bool(self.server.api_key()))

    @Slot()
    def show_status(self) -> None:
        server = self.server
        if server.running:
            n = server.requests_served
            served = f"{n} request{'s' if n != 1 else ''} served"
            if server.replying:
                served += " · replying now"
            key = "clients must send the API key" if server.api_key() else "no key needed"
            self.status.setText(
                f"<b>On</b> at <code>{server.url}</code> · {served} · {key}.<br>"
                f"Try: <code>curl {server.url}/models</code>"
            )
        elif server.error:
            self.status.setText(f"<b>Not running:</b> {server.error}")
        else:
            self.status.setText("Off.")

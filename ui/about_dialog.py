"""Hearth's identity: the app icon, and the About dialog (versions, llama.cpp's build and the
backends it supports, the licences of the parts Hearth is built from)."""

from __future__ import annotations

import html
import json
import platform
import sys
from typing import Any

import PySide6
from PySide6.QtCore import QThreadPool, qVersion
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app import __version__, hardware
from app.hardware import LlamaBuild
from resources import RESOURCES
from ui.tasks import run_task

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
GPU_BACKENDS = ("CUDA", "Metal", "Vulkan")


def app_icon() -> QIcon:
    """The app icon: the rendered sizes (crisp at 16 and 24 pixels, where an SVG blurs), and the
    SVG for any other size."""
    icon = QIcon()
    for size in ICON_SIZES:
        png = RESOURCES / f"hearth-{size}.png"
        if png.is_file():
            icon.addFile(str(png))
    icon.addFile(str(RESOURCES / "hearth.svg"))
    return icon


def notices() -> list[dict[str, str]]:
    data: dict[str, Any] = json.loads((RESOURCES / "notices.json").read_text(encoding="utf-8"))
    return list(data["parts"])


def backends_text(build: LlamaBuild) -> list[tuple[str, str]]:
    """(backend, what this build does with it) for the CPU and each GPU backend."""
    cpu = ", ".join(build.cpu_features) or "baseline instructions only"
    rows = [("CPU", f"yes — using {cpu}")]
    for name in GPU_BACKENDS:
        if build.supports(name):
            devices = [d.description for d in build.devices if d.kind in ("GPU", "iGPU")]
            rows.append((name, "yes" + (f" — {', '.join(devices)}" if devices else "")))
        else:
            rows.append((name, "not in this build"))
    return rows


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Hearth")
        self.setMinimumSize(600, 560)
        self.pool = QThreadPool(self)
        self.build: LlamaBuild | None = None
        self.build_error = ""

        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(64, 64))
        title = QLabel(
            f"<h2 style='margin:0'>Hearth {html.escape(__version__)}</h2>"
            "Private, offline chat with open language models."
        )
        head = QHBoxLayout()
        head.addWidget(icon)
        head.addWidget(title, 1)

        self.details = QTextBrowser()
        self.details.setOpenExternalLinks(True)  # licence pages open in the browser
        self.details.setAccessibleName("Versions, llama.cpp build and licences")

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.copy_button = QPushButton("Copy details")
        self.copy_button.setToolTip("Versions and build, as text for a bug report")
        self.copy_button.clicked.connect(self.copy_details)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)

        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.details, 1)
        layout.addWidget(buttons)
        self._show()
        # llama.cpp's report comes from a child process (~1 s the dialog does not wait for).
        run_task(self.pool, hardware.llama_build, self._on_build, self._on_build_error)

    def _on_build(self, build: LlamaBuild) -> None:
        self.build = build
        self._show()

    def _on_build_error(self, error: Exception) -> None:
        self.build_error = str(error)
        self._show()

    def version_lines(self) -> list[tuple[str, str]]:
        rows = [("Hearth", __version__)]
        build = self.build
        if build is not None:
            commit = f", commit {build.ggml_commit}" if build.ggml_commit else ""
            rows.append(("llama.cpp", f"{build.llama_version} (ggml {build.ggml_version}{commit})"))
            rows.append(("llama-cpp-python", build.bindings_version))
        rows += [
            ("Qt", f"{qVersion()} (PySide6 {PySide6.__version__})"),
            ("Python", platform.python_version()),
            ("System", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ]
        if getattr(sys, "frozen", False):
            rows.append(("Install", "bundle"))
        return rows

    def _show(self) -> None:
        def table(rows: list[tuple[str, str]]) -> str:
            cells = "".join(
                f"<tr><td style='padding-right:14px'><b>{html.escape(k)}</b></td>"
                f"<td>{html.escape(v)}</td></tr>"
                for k, v in rows
            )
            return f"<table cellspacing='2'>{cells}</table>"

        parts = ["<h3>Versions</h3>", table(self.version_lines())]
        parts.append("<h3>What this build of llama.cpp runs models on</h3>")
        if self.build is not None:
            parts.append(table(backends_text(self.build)))
        elif self.build_error:
            parts.append(f"<p>Unknown: {html.escape(self.build_error)}</p>")
        else:
            parts.append("<p>Reading llama.cpp's build…</p>")
        parts.append("<h3>Licences</h3><p>Hearth is built from these parts:</p>")
        rows = "".join(
            f"<tr><td style='padding-right:14px'>"
            f"<a href='{html.escape(p['url'], quote=True)}'>{html.escape(p['name'])}</a></td>"
            f"<td style='padding-right:14px'>{html.escape(p['licence'])}</td>"
            f"<td>{html.escape(p.get('role', ''))}</td></tr>"
            for p in notices()
        )
        parts.append(f"<table cellspacing='2'>{rows}</table>")
        scroll = self.details.verticalScrollBar().value()
        self.details.setHtml("".join(parts))
        self.details.verticalScrollBar().setValue(scroll)

    def details_text(self) -> str:
        lines = [f"{k}: {v}" for k, v in self.version_lines()]
        if self.build is not None:
            lines += [f"{k}: {v}" for k, v in backends_text(self.build)]
            lines.append(f"llama.cpp system info: {self.build.system_info.strip()}")
        return "\n".join(lines)

    def copy_details(self) -> None:
        QGuiApplication.clipboard().setText(self.details_text())
        self.copy_button.setText("Copied")

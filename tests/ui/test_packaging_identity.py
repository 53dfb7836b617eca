"""Hearth's identity and what it says about this computer: the icon, the About dialog, and
Settings → This computer."""

from __future__ import annotations

import platform
from collections.abc import Callable

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app import __version__, hardware
from app.hub.fit import gpu_backend
from app.settings import Settings
from ui.about_dialog import AboutDialog, app_icon
from ui.hardware_panel import HardwarePanel
from ui.main_window import MainWindow


def test_the_app_icon_has_crisp_small_sizes_and_a_large_one(qapp: QApplication) -> None:
    icon = app_icon()
    assert not icon.isNull()
    sizes = icon.availableSizes()
    for side in (16, 32, 256):
        assert QSize(side, side) in sizes


def test_about_says_the_versions_the_backends_and_the_licences(qtbot: QtBot) -> None:
    dialog = AboutDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.build is not None, timeout=30_000)
    text = dialog.details.toPlainText()
    assert f"Hearth\n{__version__}\n" in text
    build = dialog.build
    assert build is not None
    assert build.llama_version in text
    assert f"ggml {build.ggml_version}" in text
    assert platform.python_version() in text
    for backend in ("CPU", "CUDA", "Metal", "Vulkan"):
        assert backend in text
    if not gpu_backend():  # this machine's CPU-only build
        assert text.count("not in this build") == 3
    assert "llama.cpp and ggml" in text
    assert "LGPL-3.0" in text  # Qt's licence, which the bundle must carry
    assert "Reading llama.cpp's build" not in text

    dialog.copy_button.click()
    copied = QApplication.clipboard().text()
    assert f"Hearth: {__version__}" in copied
    assert f"llama-cpp-python: {build.bindings_version}" in copied
    assert "llama.cpp system info: CPU :" in copied


def test_f1_opens_about_from_the_window(window: MainWindow, qtbot: QtBot) -> None:
    qtbot.keyClick(window, Qt.Key.Key_F1)
    qtbot.waitUntil(lambda: getattr(window, "about_dialog", None) is not None)
    assert window.about_dialog.isVisible()
    assert window.about_dialog.windowTitle() == "About Hearth"
    qtbot.waitUntil(lambda: window.about_dialog.build is not None, timeout=30_000)
    window.about_dialog.reject()


def test_the_hardware_panel_shows_this_computer(qtbot: QtBot) -> None:
    settings = Settings()
    panel = HardwarePanel(settings)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.found is not None and panel.build is not None, timeout=30_000)
    found = hardware.hardware()
    assert panel.processor.text().startswith(found.processor.model)
    assert panel.cores.text().startswith(f"{found.processor.physical_cores} physical")
    assert " free of " in panel.memory.text()
    automatic = hardware.default_threads()
    assert panel.threads.text() == f"{automatic} (Automatic: one per physical core)"
    assert panel.build is not None
    assert panel.features.text() == ", ".join(panel.build.cpu_features)
    if not gpu_backend():
        assert panel.backend.text() == "CPU"
    if not found.gpus:
        assert panel.gpu.text() == "None found"


def test_a_thread_count_set_by_hand_is_shown_as_such(qtbot: QtBot) -> None:
    automatic = hardware.default_threads()
    settings = Settings(threads=automatic + 3)
    panel = HardwarePanel(settings)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.found is not None, timeout=30_000)
    assert panel.threads.text() == (
        f"{automatic + 3} (set under Engine; Automatic would be {automatic})"
    )


def test_about_is_a_button_away_in_settings(
    make_window: Callable[..., MainWindow], qtbot: QtBot
) -> None:
    window = make_window()
    window.show_page(window.SETTINGS)
    panel = window.settings_page.hardware_panel
    about = next(b for b in panel.findChildren(type(panel.refresh_button)) if "About" in b.text())
    about.click()
    qtbot.waitUntil(lambda: getattr(window, "about_dialog", None) is not None)
    assert window.about_dialog.isVisible()
    qtbot.waitUntil(lambda: window.about_dialog.build is not None, timeout=30_000)
    qtbot.waitUntil(lambda: panel.found is not None, timeout=30_000)
    window.about_dialog.reject()


def test_threads_say_automatic_with_the_number_it_stands_for(window: MainWindow) -> None:
    spin = window.settings_page.threads
    assert window.ctx.settings.threads == 0
    assert spin.text() == f"Automatic ({hardware.default_threads()})"
    assert window.ctx.load_params().threads == hardware.default_threads()
    spin.setValue(3)
    window.settings_page.flush()
    assert window.ctx.load_params().threads == 3

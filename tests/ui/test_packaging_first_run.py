"""The first start (a welcome, then a chat or the recommended models) and opening Hearth again
while it runs (the running window comes forward; no second window)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from app.library import starter_model_path
from app.settings import load_settings
from tests.cli_process import ROOT
from ui import welcome
from ui.main_window import MainWindow
from ui.single_instance import SingleInstance


def open_welcome(window: MainWindow, qtbot: QtBot) -> welcome.FirstRun:
    first = welcome.welcome_if_first_run(window)
    assert first is not None
    qtbot.waitUntil(first.dialog.isVisible)
    return first


@pytest.mark.usefixtures("starter_model")  # fails, saying how to install it, where missing
def test_the_first_start_welcomes_then_opens_a_chat_with_the_starter_model(
    window: MainWindow, qtbot: QtBot
) -> None:
    first = open_welcome(window, qtbot)
    text = first.dialog.text.text()
    assert "Nothing you type leaves this computer" in text
    assert str(window.ctx.paths.models_dir) in text
    assert "starter model is already here" in text
    assert first.dialog.go_button.text() == "Start chatting"
    first.dialog.go_button.click()
    assert not first.dialog.isVisible()
    assert window.pages.currentIndex() == window.CHAT
    assert window.chat_page.current_model_path() == str(starter_model_path())
    assert load_settings(window.ctx.paths.settings_file).welcome_shown
    assert welcome.welcome_if_first_run(window) is None  # once only


def test_without_a_model_the_welcome_leads_to_the_recommended_models(
    window: MainWindow, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(welcome, "starter_model_path", lambda: None)
    first = open_welcome(window, qtbot)
    assert "There is no model yet" in first.dialog.text.text()
    assert first.dialog.go_button.text() == "See recommended models"
    first.dialog.go_button.click()
    assert window.pages.currentIndex() == window.DISCOVER
    assert window.ctx.settings.welcome_shown


def test_closing_the_welcome_counts_as_seen(window: MainWindow, qtbot: QtBot) -> None:
    first = open_welcome(window, qtbot)
    first.dialog.reject()  # Esc or the close button
    assert load_settings(window.ctx.paths.settings_file).welcome_shown
    assert window.pages.currentIndex() in (window.CHAT, window.DISCOVER)


# The offscreen platform cannot raise windows; says nothing about our code.
@pytest.mark.qt_log_ignore("This plugin does not support raise")
def test_opening_hearth_again_brings_the_running_window_forward(
    qtbot: QtBot, hearth_home: Path
) -> None:
    from app.paths import get_paths

    running = SingleInstance(get_paths().data_dir)
    assert running.claim()
    shown = QWidget()
    qtbot.addWidget(shown)
    shown.showMinimized()
    running.window = shown
    try:
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        with qtbot.waitSignal(running.activated, timeout=60_000):
            second = subprocess.Popen(
                [sys.executable, "-c", "import sys, ui.launcher; sys.exit(ui.launcher.main())"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        _out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        assert not shown.windowState() & Qt.WindowState.WindowMinimized
        assert shown.isVisible()
        # The second start opened nothing of its own: no chats database, no window of its own.
        assert not get_paths().chats_db.exists()
    finally:
        running.release()


def test_after_hearth_quits_the_next_start_is_the_first_again(tmp_path: Path) -> None:
    first = SingleInstance(tmp_path / "data")
    assert first.claim()
    other = SingleInstance(tmp_path / "other-data")  # another HEARTH_HOME: its own Hearth
    assert other.claim()
    other.release()
    first.release()
    again = SingleInstance(tmp_path / "data")
    assert again.claim()
    again.release()


def test_someone_who_has_chatted_before_is_not_welcomed(window: MainWindow) -> None:
    window.store.create_conversation(title="From before the welcome existed")
    assert welcome.welcome_if_first_run(window) is None
    assert window.ctx.settings.welcome_shown


@pytest.mark.qt_log_ignore("This plugin does not support raise")
def test_a_dialog_open_over_the_window_stays_above_it_when_brought_forward(
    window: MainWindow, qtbot: QtBot
) -> None:
    from ui.single_instance import bring_forward

    first = open_welcome(window, qtbot)
    window.showMinimized()
    bring_forward(window)
    assert not window.windowState() & Qt.WindowState.WindowMinimized
    assert first.dialog.isVisible()
    assert QApplication.activeModalWidget() is first.dialog

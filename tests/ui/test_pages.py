from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.context import AppContext
from tests.fake_engine import FakeEngine
from ui.main_window import MainWindow
from ui.settings_page import SETTLE_MS


def test_models_page_lists_loads_and_deletes(
    qtbot: QtBot,
    make_window: Callable[..., MainWindow],
    make_model: Callable[..., Path],
    fake_engine: FakeEngine,
) -> None:
    path = make_model("owner/repo/extra.gguf", folder=AppContext.open().paths.models_dir)
    window = make_window()
    page = window.models_page
    window.show_page(window.MODELS)
    table = page.table_model
    names = [table.index(r, 0).data() for r in range(table.rowCount())]
    row = next(r for r, n in enumerate(names) if n.startswith("extra"))
    # The first model in the library is loaded at start; load the starter instead.
    qtbot.waitUntil(lambda: fake_engine.loads == [str(path)], timeout=5000)
    starter_row = next(r for r, n in enumerate(names) if n.startswith("SmolLM2"))
    page.table.selectRow(starter_row)
    with qtbot.waitSignal(window.engine.model_loaded, timeout=5000):
        page.load_button.click()
    assert "SmolLM2" in fake_engine.loads[-1]
    assert "SmolLM2" in window.chat_page.picker.currentText()
    assert table.index(starter_row, 0).data().endswith("(loaded)")
    model = table.model_at(row)
    with qtbot.waitSignal(page.table_model.modelReset, timeout=5000):
        window.delete_model(model)
    assert not path.exists()
    assert not any(
        (n or "").startswith("extra")
        for n in (table.index(r, 0).data() for r in range(table.rowCount()))
    )


def test_models_page_empty_state(
    qtbot: QtBot, make_window: Callable[..., MainWindow], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.library.starter_model_path", lambda: None)
    window = make_window(wait_for_library=False)
    qtbot.waitUntil(
        lambda: window.models_page.stack.currentWidget() is window.models_page.empty, timeout=5000
    )
    assert "No models yet" in window.models_page.empty.text()
    assert "No models" in window.chat_page.picker.currentText()
    window.chat_page.input.setPlainText("hello")
    window.chat_page.send()
    assert "Add a model" in window.chat_page.status.text()
    assert window.chat_page.messages.rowCount() == 0


def test_add_model_file(qtbot: QtBot, window: MainWindow, make_model: Callable[..., Path]) -> None:
    path = make_model("imported.gguf")
    with qtbot.waitSignal(window.models_page.table_model.modelReset, timeout=5000):
        window.add_model_file(str(path), True)
    assert (window.ctx.paths.models_dir / "local" / "imported.gguf").exists()
    assert window.chat_page.picker.findText("imported") >= 0


def test_settings_page_saves(qtbot: QtBot, window: MainWindow) -> None:
    page = window.settings_page
    page.context.setValue(8192)
    page.temperature.setValue(0.3)
    page.theme.setCurrentIndex(page.theme.findData("dark"))
    page.template.setCurrentIndex(page.template.findData("chatml"))
    page.read_while_typing.setChecked(False)
    # Switches save at once (the checkbox above), a number typed once it has settled.
    file = window.ctx.paths.settings_file
    qtbot.waitUntil(lambda: json.loads(file.read_text())["context_length"] == 8192, timeout=5000)
    saved = json.loads(file.read_text())
    assert saved["read_while_typing"] is False
    assert saved["context_length"] == 8192
    assert saved["sampling"]["temperature"] == pytest.approx(0.3)
    assert saved["theme"] == "dark"
    assert saved["chat_template_override"] == "chatml"
    assert window.ctx.load_params().context_length == 8192


def test_settings_are_saved_once_typing_settles(qtbot: QtBot, window: MainWindow) -> None:
    """Not an fsync'd write (nor a model reload) per keystroke."""
    page = window.settings_page
    saves: list[bool] = []
    reloads: list[bool] = []
    page.changed.connect(lambda: saves.append(True))
    page.engine_settings_changed.connect(lambda: reloads.append(True))
    page.system_prompt.setFocus()
    qtbot.keyClicks(page.system_prompt, "You are terse.")
    page.context.lineEdit().selectAll()
    qtbot.keyClicks(page.context, "8192")
    qtbot.wait(SETTLE_MS * 3)
    assert (len(saves), len(reloads)) == (1, 1)
    assert json.loads(window.ctx.paths.settings_file.read_text())["default_system_prompt"] == (
        "You are terse."
    )
    # A change still settling when the window closes is saved.
    page.temperature.setValue(0.9)
    window.close()
    saved = json.loads(window.ctx.paths.settings_file.read_text())
    assert saved["sampling"]["temperature"] == pytest.approx(0.9)
    assert saved["context_length"] == 8192


def test_settings_folders_go_through_the_library(
    qtbot: QtBot, window: MainWindow, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    folder = tmp_path / "lmstudio"
    make_model("shared.gguf", folder=folder)
    page = window.settings_page
    with qtbot.waitSignal(window.models_page.table_model.modelReset, timeout=5000):
        page.add_folder(str(folder / ".." / "lmstudio"))
    resolved = str(folder.resolve())
    assert json.loads(window.ctx.paths.settings_file.read_text())["model_folders"] == [resolved]
    assert [page.folders.item(i).text() for i in range(page.folders.count())] == [resolved]
    assert window.chat_page.picker.findText("shared") >= 0
    page.folders.setCurrentRow(0)
    page._remove_folder()
    assert json.loads(window.ctx.paths.settings_file.read_text())["model_folders"] == []
    assert page.folders.count() == 0


def test_the_window_can_be_narrow(qtbot: QtBot, window: MainWindow) -> None:
    """The Models page's one row of seven buttons held the window at ~900 px."""
    assert window.minimumSizeHint().width() <= 700
    window.resize(700, 560)
    window.show_page(window.MODELS)
    qtbot.wait(50)
    page = window.models_page
    for button in (page.load_button, page.unload_button, page.delete_button, page.open_button):
        right = button.mapTo(window, button.rect().topRight()).x()
        assert right <= window.width(), button.text()  # nothing cut off at the right


def test_the_wheel_over_a_settings_field_scrolls_the_page_not_the_value(
    qtbot: QtBot, window: MainWindow
) -> None:
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    page = window.settings_page
    window.show_page(window.SETTINGS)
    before = page.min_p.value()
    bar = page.verticalScrollBar()
    bar.setValue(0)
    wheel = QWheelEvent(
        QPointF(5, 5),
        QPointF(page.min_p.mapToGlobal(QPoint(5, 5))),
        QPoint(0, 0),
        QPoint(0, -120),  # one notch down
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(page.min_p, wheel)
    assert page.min_p.value() == before  # the setting is left as it was
    assert bar.value() > 0 or bar.maximum() == 0  # the page scrolled instead
    # Tab in the system prompt moves on instead of typing a tab that would be saved.
    page.system_prompt.setFocus()
    qtbot.keyClick(page.system_prompt, Qt.Key.Key_Tab)
    assert "\t" not in page.system_prompt.toPlainText()


def test_the_window_reopens_where_it_was_left(
    qtbot: QtBot, make_window: Callable[..., MainWindow]
) -> None:
    first = make_window()
    first.resize(700, 500)  # within the offscreen screen (800 x 600), which restoring keeps to
    first.close()
    assert AppContext.open().settings.window_geometry  # kept with the settings
    second = make_window()
    assert (second.width(), second.height()) == (700, 500)


def test_ctrl_shift_c_copies_the_last_reply(qtbot: QtBot, window: MainWindow) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication

    from tests.ui.test_chat_page import send

    send(qtbot, window, "Hi")
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(
        window,
        Qt.Key.Key_C,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert QGuiApplication.clipboard().text() == "Hello there! Here is **bold** text."


def test_check_boxes_are_visible_in_the_dark_theme(qtbot: QtBot) -> None:
    """Fusion drew an unticked box a shade off the dark window: next to invisible."""
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QApplication, QCheckBox, QStyle, QStyleOptionButton

    from ui.theme import apply_theme

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    saved = (app.styleSheet(), app.palette(), app.style().name())
    try:
        apply_theme(app, "dark")
        box = QCheckBox("Offline mode")
        qtbot.addWidget(box)
        box.resize(160, 24)
        image = box.grab().toImage()
        option = QStyleOptionButton()
        box.initStyleOption(option)
        where = box.style().subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, option, box)
        window = QColor(app.palette().window().color()).lightness()
        contrast = max(
            abs(image.pixelColor(x, y).lightness() - window)
            for x in range(where.left(), where.right() + 1)
            for y in range(where.top(), where.bottom() + 1)
        )
        assert contrast > 60  # the box's frame stands out from the window
    finally:
        app.setStyle(saved[2])
        app.setPalette(saved[1])
        app.setStyleSheet(saved[0])

"""The first-run welcome: what Hearth is, that nothing leaves this computer, where models go;
then straight into a chat with the starter model, or to the recommended models without one."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.library import starter_model_path
from ui.about_dialog import app_icon
from ui.main_window import MainWindow


class WelcomeDialog(QDialog):
    def __init__(self, models_dir: str, has_starter: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Welcome to Hearth")
        self.setMinimumWidth(520)
        self.has_starter = has_starter
        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(64, 64))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        if has_starter:
            models = (
                "A small starter model is already here, so you can chat right away. It is quick "
                "but knows little; <b>Discover</b> finds bigger ones on the Hugging Face Hub."
            )
            go = "Start chatting"
        else:
            models = (
                "There is no model yet. <b>Discover</b> lists a few recommended ones with "
                "permissive licences; each shows whether it fits on this computer."
            )
            go = "See recommended models"
        self.text = QLabel(
            "<h2 style='margin-top:0'>Welcome to Hearth</h2>"
            "<p>Hearth chats with AI language models that run <b>on this computer</b>.</p>"
            "<p><b>Nothing you type leaves this computer.</b> Chatting works with the network "
            "unplugged; Hearth goes online only when you search for or download models "
            "(Settings → Offline mode turns even that off).</p>"
            f"<p>Models you download are kept in<br><code>{html.escape(models_dir)}</code><br>"
            "and you can add folders of models you already have in Settings.</p>"
            f"<p>{models}</p>"
        )
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.go_button = QPushButton(go)
        self.go_button.setDefault(True)
        self.go_button.clicked.connect(self.accept)
        top = QHBoxLayout()
        top.addWidget(icon)
        top.addWidget(self.text, 1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.go_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(buttons)


class FirstRun:
    """Shows the welcome over the window once; closing it any way goes on to the first step."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.starter = starter_model_path()
        self.dialog = WelcomeDialog(
            str(window.ctx.paths.models_dir), self.starter is not None, window
        )
        self.dialog.setModal(True)
        self.dialog.finished.connect(self._done)

    def show(self) -> None:
        self.dialog.open()
        self.dialog.go_button.setFocus()

    @Slot(int)
    def _done(self, _result: int) -> None:
        window = self.window
        window.ctx.settings.welcome_shown = True
        window.ctx.save_settings()
        if self.starter is not None:
            window.new_chat()
            window.chat_page.choose_model(str(self.starter))
            window.chat_page.input.setFocus()
        else:
            window.show_page(window.DISCOVER)  # an empty search lists the recommended models
        self.dialog.deleteLater()


def welcome_if_first_run(window: MainWindow) -> FirstRun | None:
    """On the first start (the welcome never seen), show it once the window is up."""
    if window.ctx.settings.welcome_shown:
        return None
    if window.store.conversations():  # someone who chatted before this welcome existed
        window.ctx.settings.welcome_shown = True
        window.ctx.save_settings()
        return None
    first = FirstRun(window)
    QTimer.singleShot(0, first.show)
    return first

"""Chat settings: the shown conversation's own system prompt (with presets), sampling, context
length and thinking.

Every number may be left empty: the conversation then follows the app's default (Settings →
Replies), which the empty field shows as its placeholder ("0.7 (default)"), so changing a default
reaches every chat that did not choose otherwise. The store owns what a conversation set
(``ChatStore.chat_settings``); a new chat, not saved before its first message, keeps what was set
here in ``NewChatDraft`` until ``ChatPage.send`` saves it with the chat.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QIcon, QResizeEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chats.chat_settings import ChatSettings
from app.chats.presets import Preset, PresetError
from app.chats.store import ChatStore, ChatStoreError, Conversation
from app.context import AppContext
from app.engine.types import LoadedModel
from resources import RESOURCES
from ui.engine_controller import EngineController

SETTLE_MS = 400  # a change is saved once typing pauses this long (and when the panel closes)


@dataclass
class NewChatDraft:
    """What the panel set for the new chat shown, saved with it by its first message."""

    settings: ChatSettings = field(default_factory=ChatSettings)
    system_prompt: str | None = None  # None: what new chats get (the default preset or Settings)


@dataclass(frozen=True)
class _Number:
    key: str  # the ChatSettings field
    label: str
    whole: bool  # an int field (else float)
    tip: str


_NUMBERS = (
    _Number(
        "temperature", "Temperature", False, "Higher is more varied, 0 always picks the likeliest"
    ),
    _Number("top_p", "Top P", False, "Pick among the likeliest words that make up this share"),
    _Number("top_k", "Top K", True, "Pick among this many likeliest words (0: all)"),
    _Number("min_p", "Min P", False, "Leave out words this much less likely than the likeliest"),
    _Number("repeat_penalty", "Repeat penalty", False, "Above 1 makes repeating words rarer"),
    _Number("max_tokens", "Max reply tokens", True, "A reply stops after this many tokens"),
    _Number("seed", "Seed", True, "The same seed and settings give the same reply; -1: random"),
    _Number(
        "context_length",
        "Context length",
        True,
        "Tokens the model keeps in mind; another length reloads the model",
    ),
    _Number(
        "thinking_budget",
        "Thinking budget",
        True,
        "Most tokens a reply may think for before it answers (0: answer at once)",
    ),
)


class ChatSettingsButton(QToolButton):
    """The top bar's "Chat settings": its words where there is room, only its icon in a narrow
    window (which must fit in 700 px with the model picker beside it)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setText("Chat settings")
        self.setAccessibleName("Chat settings")
        self.setToolTip("This chat's system prompt, sampling and thinking")
        self.setIcon(QIcon(str(RESOURCES / "sliders.svg")))
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._measure()

    def _measure(self) -> None:
        """Both sizes, for the font now (zoom changes it)."""
        style = self.toolButtonStyle()
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self._full = super().sizeHint()
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        self._icon_only = super().sizeHint()
        self.setToolButtonStyle(style)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._measure()
            self.updateGeometry()

    def sizeHint(self) -> QSize:
        return self._full

    def minimumSizeHint(self) -> QSize:
        return self._icon_only

    def resizeEvent(self, event: QResizeEvent) -> None:
        roomy = event.size().width() >= self._full.width()
        self.setToolButtonStyle(
            Qt.ToolButtonStyle.ToolButtonTextBesideIcon
            if roomy
            else Qt.ToolButtonStyle.ToolButtonIconOnly
        )
        super().resizeEvent(event)


class OptionalNumber(QLineEdit):
    """A number that may be left empty: the default, which the placeholder shows."""

    def __init__(self, spec: _Number, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.setObjectName(f"setting_{spec.key}")
        self.setAccessibleName(spec.label)
        self.setToolTip(spec.tip)
        self.setClearButtonEnabled(True)
        self.setMinimumWidth(150)

    def number(self) -> int | float | None:
        """The number typed (None when empty); ValueError when it is not one."""
        text = self.text().strip().replace(",", ".")
        if not text:
            return None
        return int(text) if self.spec.whole else float(text)

    def show_number(self, value: int | float | None) -> None:
        self.setText("" if value is None else f"{value:g}")

    def set_invalid(self, invalid: bool) -> None:
        if self.property("invalid") != invalid:
            self.setProperty("invalid", invalid)
            self.style().unpolish(self)
            self.style().polish(self)


def _default_text(key: str, ctx: AppContext) -> str:
    """The app's default for a setting, as the empty field shows it."""
    s = ctx.settings.sampling
    if key == "context_length":
        return f"{ctx.settings.context_length or 'Automatic'} (default)"
    if key == "seed" and s.seed < 0:
        return "Random (default)"
    if key == "thinking_budget" and s.thinking_budget is None:
        return "No limit (default)"
    return f"{getattr(s, key):g} (default)"


STYLE = """
QLineEdit[invalid="true"] { border: 1px solid #d04040; border-radius: 3px; }
#settingsError { color: #d04040; }
#settingsNote { color: palette(placeholder-text); font-size: 11px; }
QCheckBox:disabled { color: palette(placeholder-text); }
QCheckBox::indicator:checked:disabled { background: palette(mid); border-color: palette(mid); }
"""


class ConversationSettingsDialog(QDialog):
    """The panel for the chat shown (``shown()``: its conversation, None for a new chat).

    Changes are saved as they are made (once typing pauses, and when the panel closes).
    """

    changed = Signal()  # the shown chat's settings or system prompt were saved

    def __init__(
        self,
        ctx: AppContext,
        store: ChatStore,
        engine: EngineController,
        shown: Callable[[], Conversation | None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.store = store
        self._shown = shown
        self.draft = NewChatDraft()
        self._conversation_id: int | None = None
        self._settings = ChatSettings()
        self._prompt = ""
        self._loaded: LoadedModel | None = None
        self._filling = False  # fields are being filled, not edited
        self._dirty_prompt = False
        self._dirty_settings = False
        self.setWindowTitle("Chat settings")
        self.setModal(True)
        self.setStyleSheet(STYLE)
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SETTLE_MS)
        self._save_timer.timeout.connect(self.flush)
        engine.model_loaded.connect(self._on_loaded)
        engine.model_unloaded.connect(self._on_unloaded)

        self.heading = QLabel()
        self.heading.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self._prompt_box())
        layout.addWidget(self._replies_box())
        layout.addWidget(self._thinking_box())
        self.error = QLabel()
        self.error.setObjectName("settingsError")
        self.error.setWordWrap(True)
        self.error.hide()
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.reset_button = QPushButton("Reset to defaults")
        self.reset_button.setToolTip(
            "Sampling, context length and thinking follow Settings again (the system prompt stays)"
        )
        self.reset_button.clicked.connect(self.reset_to_defaults)
        buttons.addButton(self.reset_button, QDialogButtonBox.ButtonRole.ResetRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        # Enter in a field closes the panel (what was typed is saved), never opens "Save as
        # preset…", which a dialog's first button would otherwise do.
        for b in self.findChildren(QPushButton):
            b.setAutoDefault(False)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setDefault(True)
        self.setMinimumWidth(560)

    # building

    def _prompt_box(self) -> QGroupBox:
        box = QGroupBox("System prompt")
        self.preset = QComboBox()
        self.preset.setAccessibleName("System prompt preset")
        self.preset.setMinimumWidth(220)
        self.preset.activated.connect(self._preset_picked)
        self.make_default = QCheckBox("Default for new chats")
        self.make_default.setToolTip("New chats start with this preset's prompt")
        self.make_default.toggled.connect(self._default_toggled)
        label = QLabel("Preset:")
        label.setBuddy(self.preset)
        top = QHBoxLayout()
        top.addWidget(label)
        top.addWidget(self.preset, 1)
        top.addWidget(self.make_default)
        self.prompt = QPlainTextEdit()
        self.prompt.setAccessibleName("System prompt")
        self.prompt.setTabChangesFocus(True)
        self.prompt.setPlaceholderText("Instructions the model reads before the conversation")
        self.prompt.setFixedHeight(96)
        self.prompt.textChanged.connect(self._prompt_edited)
        self.save_preset = QPushButton("Save as preset…")
        self.save_preset.clicked.connect(self.save_as_preset)
        self.update_preset = QPushButton("Update preset")
        self.update_preset.setToolTip("Save this text into the preset picked above")
        self.update_preset.clicked.connect(self.update_picked_preset)
        self.rename_preset = QPushButton("Rename…")
        self.rename_preset.clicked.connect(self.rename_picked_preset)
        self.delete_preset = QPushButton("Delete preset")
        self.delete_preset.clicked.connect(self.delete_picked_preset)
        row = QHBoxLayout()
        for b in (self.save_preset, self.update_preset, self.rename_preset, self.delete_preset):
            row.addWidget(b)
        row.addStretch(1)
        v = QVBoxLayout(box)
        v.addLayout(top)
        v.addWidget(self.prompt)
        v.addLayout(row)
        return box

    def _replies_box(self) -> QGroupBox:
        box = QGroupBox("Replies (empty: the default from Settings)")
        grid = QGridLayout(box)
        grid.setHorizontalSpacing(12)
        self.fields: dict[str, OptionalNumber] = {}
        for i, spec in enumerate(n for n in _NUMBERS if n.key != "thinking_budget"):
            f = self._number_field(spec)
            row, col = divmod(i, 2)
            label = QLabel(spec.label)
            label.setBuddy(f)  # screen readers name the field by it
            grid.addWidget(label, row, col * 2)
            grid.addWidget(f, row, col * 2 + 1)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        return box

    def _thinking_box(self) -> QGroupBox:
        box = QGroupBox("Thinking (reasoning models)")
        self.thinking = QCheckBox("Think before answering")
        self.thinking.setChecked(True)
        self.thinking.toggled.connect(self._thinking_toggled)
        self.thinking_note = QLabel()
        self.thinking_note.setObjectName("settingsNote")
        self.thinking_note.setWordWrap(True)
        budget = self._number_field(next(n for n in _NUMBERS if n.key == "thinking_budget"))
        label = QLabel("Thinking budget (tokens)")
        label.setBuddy(budget)
        row = QHBoxLayout()
        row.addWidget(label)
        row.addWidget(budget)
        row.addStretch(1)
        v = QVBoxLayout(box)
        v.addWidget(self.thinking)
        v.addWidget(self.thinking_note)
        v.addLayout(row)
        return box

    def _number_field(self, spec: _Number) -> OptionalNumber:
        f = OptionalNumber(spec)
        f.textChanged.connect(self._number_edited)
        self.fields[spec.key] = f
        return f

    # showing a chat

    @Slot()
    def open_panel(self) -> None:
        """Show the settings of the chat shown now."""
        self.show_conversation(self._shown())
        self.open()

    def show_conversation(self, conversation: Conversation | None) -> None:
        """Fill the fields with ``conversation``'s settings (None: the new chat's draft)."""
        self.flush()
        self._conversation_id = conversation.id if conversation else None
        if conversation is None:
            self._settings = self.draft.settings
            self._prompt = self.new_chat_system_prompt()
            self.heading.setText("<b>New chat</b> — saved with it when you send its first message")
        else:
            saved = self.store.conversation(conversation.id) or conversation
            self._settings = self.store.chat_settings(conversation.id)
            self._prompt = saved.system_prompt
            self.heading.setText(f"<b>{html.escape(saved.title)}</b>")
        self._filling = True
        try:
            self.prompt.setPlainText(self._prompt)
            for key, f in self.fields.items():
                f.setPlaceholderText(_default_text(key, self.ctx))
                f.show_number(getattr(self._settings, key))
                f.set_invalid(False)
            self.thinking.setChecked(self._settings.thinking is not False)
        finally:
            self._filling = False
        self._show_error("")
        self._fill_presets(self._matching_preset())
        self._show_thinking_state()

    def _matching_preset(self) -> int | None:
        for p in self.store.presets.all():
            if p.text == self._prompt:
                return p.id
        return None

    def _fill_presets(self, selected: int | None) -> None:
        self.preset.clear()
        self.preset.addItem("No preset", None)
        for p in self.store.presets.all():
            self.preset.addItem(f"{p.name} (default)" if p.is_default else p.name, p.id)
        i = self.preset.findData(selected) if selected is not None else 0
        self.preset.setCurrentIndex(max(i, 0))
        self._show_preset_state()

    def picked_preset(self) -> Preset | None:
        preset_id = self.preset.currentData()
        return self.store.presets.get(preset_id) if preset_id is not None else None

    def _show_preset_state(self) -> None:
        picked = self.picked_preset()
        self.update_preset.setEnabled(picked is not None and picked.text != self._prompt)
        self.rename_preset.setEnabled(picked is not None)
        self.delete_preset.setEnabled(picked is not None)
        self._filling, was = True, self._filling
        try:
            self.make_default.setEnabled(picked is not None)
            self.make_default.setChecked(picked is not None and picked.is_default)
        finally:
            self._filling = was

    def _show_thinking_state(self) -> None:
        loaded = self._loaded
        switch = loaded is not None and loaded.thinking_switch
        self.thinking.setEnabled(switch)
        if loaded is None:
            note = "Whether thinking can be turned off shows once a model is loaded."
        elif switch:
            note = f"{loaded.name} can answer with or without thinking first."
        else:
            note = f"{loaded.name}'s chat template has no switch for thinking."
        self.thinking_note.setText(note)
        self.fields["thinking_budget"].setEnabled(self._settings.thinking is not False)
        if self.isVisible():  # a longer note needs room (a dialog does not grow by itself)
            self.adjustSize()

    @Slot(LoadedModel)
    def _on_loaded(self, info: LoadedModel) -> None:
        self._loaded = info
        self._show_thinking_state()

    @Slot()
    def _on_unloaded(self) -> None:
        self._loaded = None
        self._show_thinking_state()

    # editing

    @Slot()
    def _number_edited(self) -> None:
        if self._filling:
            return
        field_ = self.sender()
        assert isinstance(field_, OptionalNumber)
        key = field_.spec.key
        try:
            value = field_.number()
            settings = self._settings.replace(**{key: value})
        except ValueError as e:
            field_.set_invalid(True)
            self._show_error(_plain(key, e, field_.spec))
            return
        field_.set_invalid(False)
        self._show_error("")
        self._set_settings(settings)

    @Slot(bool)
    def _thinking_toggled(self, on: bool) -> None:
        if self._filling:
            return
        self._set_settings(self._settings.replace(thinking=None if on else False))
        self._show_thinking_state()

    def _set_settings(self, settings: ChatSettings) -> None:
        self._settings = settings
        if self._conversation_id is None:
            self.draft.settings = settings
        else:
            self._dirty_settings = True
            self._save_timer.start()

    @Slot()
    def _prompt_edited(self) -> None:
        if self._filling:
            return
        self._prompt = self.prompt.toPlainText()
        if self._conversation_id is None:
            self.draft.system_prompt = self._prompt
        else:
            self._dirty_prompt = True
            self._save_timer.start()
        self._show_preset_state()

    @Slot()
    def reset_to_defaults(self) -> None:
        """Sampling, context length and thinking back to the app's defaults."""
        self._filling = True
        try:
            for f in self.fields.values():
                f.clear()
                f.set_invalid(False)
            self.thinking.setChecked(True)
        finally:
            self._filling = False
        self._show_error("")
        self._set_settings(ChatSettings())
        self._show_thinking_state()
        self.flush()

    @Slot()
    def flush(self) -> None:
        """Save what is still waiting for a pause in typing."""
        self._save_timer.stop()
        cid = self._conversation_id
        if cid is None or not (self._dirty_prompt or self._dirty_settings):
            return
        try:
            if self._dirty_settings:
                self.store.set_chat_settings(cid, self._settings)
            if self._dirty_prompt:
                self.store.update_conversation(cid, system_prompt=self._prompt)
        except ChatStoreError as e:  # a full disk: the fields keep what was typed
            self._show_error(str(e))
            return
        self._dirty_prompt = self._dirty_settings = False
        self.changed.emit()

    def done(self, result: int) -> None:
        self.flush()
        super().done(result)

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    # presets

    @Slot(int)
    def _preset_picked(self, index: int) -> None:
        picked = self.picked_preset()
        if picked is not None:
            self.prompt.setPlainText(picked.text)  # saved as the chat's prompt (textChanged)
        self._show_preset_state()

    @Slot()
    def save_as_preset(self) -> None:
        name, ok = QInputDialog.getText(self, "Save as preset", "Name of the preset:")
        if not ok:
            return
        try:
            saved = self.store.presets.save(name, self._prompt)
        except (PresetError, ChatStoreError) as e:
            self._show_error(str(e))
            return
        self._show_error("")
        self._fill_presets(saved.id)

    @Slot()
    def update_picked_preset(self) -> None:
        picked = self.picked_preset()
        if picked is None:
            return
        try:
            self.store.presets.update(picked.id, text=self._prompt)
        except (PresetError, ChatStoreError) as e:
            self._show_error(str(e))
            return
        self._fill_presets(picked.id)

    @Slot()
    def rename_picked_preset(self) -> None:
        picked = self.picked_preset()
        if picked is None:
            return
        name, ok = QInputDialog.getText(self, "Rename preset", "New name:", text=picked.name)
        if not ok:
            return
        try:
            self.store.presets.update(picked.id, name=name)
        except (PresetError, ChatStoreError) as e:
            self._show_error(str(e))
            return
        self._show_error("")
        self._fill_presets(picked.id)

    @Slot()
    def delete_picked_preset(self) -> None:
        picked = self.picked_preset()
        if picked is None:
            return
        answer = QMessageBox.question(
            self,
            "Delete preset",
            f"Delete the preset “{picked.name}”? Chats that use its prompt keep it.",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            self.store.presets.delete(picked.id)
        except ChatStoreError as e:
            self._show_error(str(e))
            return
        self._fill_presets(None)

    @Slot(bool)
    def _default_toggled(self, on: bool) -> None:
        if self._filling:
            return
        picked = self.picked_preset()
        if picked is None:
            return
        try:
            self.store.presets.set_default(picked.id if on else None)
        except (PresetError, ChatStoreError) as e:
            self._show_error(str(e))
        self._fill_presets(picked.id)

    # for the chat page

    def new_chat_system_prompt(self) -> str:
        """The system prompt the new chat gets: the one set here, else the default preset's,
        else Settings' default."""
        if self.draft.system_prompt is not None:
            return self.draft.system_prompt
        return self.store.presets.system_prompt_for_new_chat(
            self.ctx.settings.default_system_prompt
        )

    def forget_draft(self) -> None:
        """The new chat was saved with the draft: the next new chat starts from the defaults."""
        self.draft = NewChatDraft()


def _plain(key: str, error: ValueError, spec: _Number) -> str:
    """A field's error in words: ``ChatSettings`` names the field by its key."""
    message = str(error)
    if message.startswith(key):
        return spec.label + message[len(key) :] + "."
    kind = "a whole number" if spec.whole else "a number"
    return f"{spec.label} must be {kind}."

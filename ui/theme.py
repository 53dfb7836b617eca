"""Light and dark palettes (Fusion style), following the system unless Settings says otherwise."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from resources import RESOURCES

_DARK = {
    QPalette.ColorRole.Window: "#1f2023",
    QPalette.ColorRole.WindowText: "#e6e6e6",
    QPalette.ColorRole.Base: "#18191b",
    QPalette.ColorRole.AlternateBase: "#232428",
    QPalette.ColorRole.Text: "#e6e6e6",
    QPalette.ColorRole.Button: "#2b2d31",
    QPalette.ColorRole.ButtonText: "#e6e6e6",
    QPalette.ColorRole.Highlight: "#d9772b",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.ToolTipBase: "#2b2d31",
    QPalette.ColorRole.ToolTipText: "#e6e6e6",
    QPalette.ColorRole.PlaceholderText: "#8a8d93",
    QPalette.ColorRole.Link: "#f0a060",
}
_LIGHT = {
    QPalette.ColorRole.Window: "#f6f5f3",
    QPalette.ColorRole.WindowText: "#1f2328",
    QPalette.ColorRole.Base: "#ffffff",
    QPalette.ColorRole.AlternateBase: "#f3f2ef",
    QPalette.ColorRole.Text: "#1f2328",
    QPalette.ColorRole.Button: "#ecebe8",
    QPalette.ColorRole.ButtonText: "#1f2328",
    QPalette.ColorRole.Highlight: "#c8611c",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.ToolTipBase: "#ffffff",
    QPalette.ColorRole.ToolTipText: "#1f2328",
    QPalette.ColorRole.PlaceholderText: "#8a8d93",
    QPalette.ColorRole.Link: "#b5541a",
}

STYLESHEET = """
#sidebar { background: palette(alternate-base); border-right: 1px solid palette(mid); }
#sidebar QListView { background: transparent; border: none; }
#sidebar QListView::item { padding: 6px 8px; border-radius: 6px; }
#sidebar QListView::item:selected {
    background: palette(highlight); color: palette(highlighted-text);
}
#appTitle { font-size: 18px; font-weight: 600; padding: 4px 2px; }
#navButton { text-align: left; padding: 6px 10px; border: none; border-radius: 6px; }
#navButton:checked { background: palette(button); font-weight: 600; }
#userMessage {
    background: palette(alternate-base); border: 1px solid palette(midlight); border-radius: 10px;
}
#messageHeader { font-weight: 600; color: palette(highlight); }
#userMessage[highlighted="true"], #assistantMessage[highlighted="true"] {
    background: rgba(230, 160, 40, 0.22); border: 1px solid rgba(230, 160, 40, 0.8);
    border-radius: 10px;
}
#versionPosition { color: palette(placeholder-text); padding: 0 2px; }
#contextMeter { color: palette(placeholder-text); font-size: 11px; }
#contextMeter[near="true"] { color: #c08000; }
#messageFooter, #engineStatus, #librarySummary {
    color: palette(placeholder-text); font-size: 11px;
}
#emptyChat { color: palette(placeholder-text); font-size: 15px; padding-top: 80px; }
#sendButton { min-width: 72px; padding: 8px 14px; }
QPlainTextEdit { border: 1px solid palette(mid); border-radius: 8px; padding: 4px; }
#primaryButton {
    background: palette(highlight); color: palette(highlighted-text); border: none;
    border-radius: 4px; padding: 4px 12px; font-weight: 600;
}
#fitBadge { border-radius: 8px; padding: 2px 10px; margin: 3px 6px; font-weight: 600; }
#gatedNotice {
    background: rgba(230, 160, 40, 0.18); border: 1px solid rgba(230, 160, 40, 0.6);
    border-radius: 6px; padding: 8px;
}
QProgressBar { border: none; border-radius: 4px; background: palette(alternate-base); }
QProgressBar::chunk { border-radius: 4px; background: palette(highlight); }
"""


# Fusion draws a check box's frame a shade darker than the window: on the dark palette it
# vanished (a user could not see which boxes were ticked). Drawn here instead, in both themes.
CHECK_BOXES = """
QCheckBox::indicator {
    width: 14px; height: 14px; border-radius: 3px;
    border: 1px solid palette(placeholder-text); background: palette(base);
}
QCheckBox::indicator:hover { border-color: palette(highlight); }
QCheckBox::indicator:checked {
    background: palette(highlight); border-color: palette(highlight); image: url("%s");
}
QCheckBox::indicator:disabled { border-color: palette(mid); }
"""


def is_dark(theme: str) -> bool:
    if theme == "dark":
        return True
    if theme == "light":
        return False
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


def apply_theme(app: QApplication, theme: str) -> None:
    app.setStyle("Fusion")
    colors = _DARK if is_dark(theme) else _LIGHT
    palette = QPalette()
    for role, color in colors.items():
        palette.setColor(role, QColor(color))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#888888"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#888888"))
    app.setPalette(palette)
    app.setStyleSheet(_style_sheet())


TEXT_SIZES = (6, 40)  # the points zoom keeps to
_text_points = 0  # the window's text size (0: the system's), a rule of the style sheet


def _style_sheet() -> str:
    check = (RESOURCES / "check.svg").as_posix()
    # Widgets with a style sheet of their own do not follow QApplication.setFont: the size is
    # a rule of the application's sheet, which reaches them all.
    size = f"* {{ font-size: {_text_points}pt; }}\n" if _text_points else ""
    return size + STYLESHEET + CHECK_BOXES % check


def apply_text_size(app: QApplication, points: int) -> None:
    """The window's text at ``points`` (0: the system's size)."""
    global _text_points
    _text_points = points
    app.setStyleSheet(_style_sheet())


def text_size(app: QApplication) -> float:
    """The window's text size now, in points."""
    return float(_text_points) if _text_points else app.font().pointSizeF()

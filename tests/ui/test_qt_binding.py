"""The Qt binding itself: what the app relies on from PySide6 and must not lose with an upgrade."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal, Slot


class _Emitter(QObject):
    text = Signal(int, str)
    flag = Signal(bool)

    def __init__(self) -> None:
        super().__init__()
        self.received = 0

    @Slot(int, str)
    def on_text(self, _request: int, _text: str) -> None:
        self.received += 1


def test_emitting_signals_keeps_references_balanced() -> None:
    """PySide6 6.12.0 dropped a reference to True at every emit: under Python 3.10/3.11 the app
    then aborted ("bool_dealloc") after ~2,000 signals, a minute or two of a streaming reply. The
    chat streams through signals all day, so every emit must leave True, False and None as it
    found them (on Python 3.12+ they are immortal and their counts do not move anyway)."""
    emitter = _Emitter()
    emitter.text.connect(emitter.on_text)
    emitter.flag.connect(lambda _busy: None)
    before = [sys.getrefcount(x) for x in (True, False, None)]
    for i in range(500):
        emitter.text.emit(i, "a token or two")
        emitter.flag.emit(i % 2 == 0)
    after = [sys.getrefcount(x) for x in (True, False, None)]
    assert emitter.received == 500
    # A few references may come and go with the interpreter's own work; hundreds may not.
    assert all(abs(a - b) < 50 for a, b in zip(after, before, strict=True)), (before, after)

"""Run blocking work off the GUI thread; results come back on the GUI thread.

The shape of Anki's ``QueryOp``: ``run_task(pool, fn, on_done, on_error)``, generic in the
result: ``on_done`` takes what ``fn`` returns (mypy checks the pair). The callbacks run on
the GUI thread because the relay QObject lives there and the signal crosses threads queued.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Relay(QObject, Generic[T]):
    done = Signal(object)  # T (a Qt signal carries it as a Python object)
    failed = Signal(object)  # Exception

    def __init__(
        self,
        on_done: Callable[[T], None],
        on_error: Callable[[Exception], None],
        owner: QObject | None,
    ):
        super().__init__()
        self._on_done = on_done
        self._on_error = on_error
        self._owner = owner
        self.done.connect(self._deliver_done)
        self.failed.connect(self._deliver_error)

    def _owner_gone(self) -> bool:
        # A page closed while its work ran: nobody is left to show the result to.
        return self._owner is not None and not shiboken6.isValid(self._owner)

    @Slot(object)
    def _deliver_done(self, result: T) -> None:
        _live.discard(self)
        if not self._owner_gone():
            self._on_done(result)

    @Slot(object)
    def _deliver_error(self, error: Exception) -> None:
        _live.discard(self)
        if not self._owner_gone():
            self._on_error(error)


_live: set[_Relay[Any]] = set()  # relays stay referenced until their callback has run


class _Task(QRunnable, Generic[T]):
    def __init__(self, fn: Callable[[], T], relay: _Relay[T]) -> None:
        super().__init__()
        self._fn = fn
        self._relay = relay

    def run(self) -> None:
        try:
            result = self._fn()
        except Exception as e:
            log.debug("background task failed: %s", traceback.format_exc())
            self._relay.failed.emit(e)
        else:
            self._relay.done.emit(result)


def run_task(
    pool: QThreadPool,
    fn: Callable[[], T],
    on_done: Callable[[T], None],
    on_error: Callable[[Exception], None],
    owner: QObject | None = None,
) -> None:
    """Run fn on the pool; its result goes to on_done (or on_error) unless owner was deleted.

    owner defaults to the object on_done is a method of.
    """
    if owner is None:
        bound_to = getattr(on_done, "__self__", None)
        owner = bound_to if isinstance(bound_to, QObject) else None
    relay: _Relay[T] = _Relay(on_done, on_error, owner)
    _live.add(relay)
    pool.start(_Task(fn, relay))


def error_text(error: Exception) -> str:
    """What a failed task tells the user: the core's own words, or "Unexpected error" (logged)."""
    from app.hub import HubError
    from app.library import LibraryError

    if isinstance(error, HubError | LibraryError):
        return str(error)
    log.error("unexpected error in a background task: %r", error)
    return f"Unexpected error: {error}"

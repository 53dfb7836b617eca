"""Model files whose loading ended the engine process, so that they are not loaded again.

An assertion in llama.cpp (a header the validator does not know to refuse, a tensor it does not
expect) aborts the process that loads the file. Loading it again would abort again: the window
would crash at every message and every start. So such a file is remembered with the reason,
listed as unusable in the library, and refused at once, until the file changes (another size or
time: a new download, a repaired copy) or llama.cpp does (an update may read it).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

from app.engine.cpu_safety import llama_build_identity
from app.fileio import JsonRecords

log = logging.getLogger(__name__)


class CrashedModels:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = JsonRecords(path, "files")

    def reasons(self) -> dict[str, str]:
        """Why each recorded file is not loaded, for those that have not changed since (one
        read of the record, for a whole library scan)."""
        out: dict[str, str] = {}
        for model, entry in self._file.load().items():
            reason = entry.get("reason")
            if isinstance(reason, str) and entry.get("stamp") == _stamp(model):
                out[model] = reason
        return out

    def reason(self, model: str | Path) -> str | None:
        """Why ``model`` is not loaded, if it crashed the engine as it is now."""
        entry = self._file.load().get(str(model))
        if entry is None or entry.get("stamp") != _stamp(model):
            return None
        reason = entry.get("reason")
        return reason if isinstance(reason, str) else None

    def remember(self, model: str | Path, reason: str) -> None:
        stamp = _stamp(model)
        if stamp is None:
            return
        files = self._file.load()
        files[str(model)] = {"stamp": stamp, "reason": reason}
        try:
            self._file.save(files)
        except OSError as e:
            log.warning("could not record that %s crashed the engine: %s", model, e)


def _stamp(model: str | Path) -> list[object] | None:
    try:
        st = Path(model).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, _llama_build()]


@functools.cache
def _llama_build() -> str:
    return hashlib.sha256(llama_build_identity().encode()).hexdigest()[:16]

"""Small file helpers shared by the core."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that readers see the old file or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JsonRecords:
    """A small versioned JSON file of records by key: ``{"version": V, "<kind>": {key: {...}}}``.

    Read whole, written whole and atomically. A missing, damaged or other-version file reads as
    no records (what it remembers is worth less than starting at all).
    """

    def __init__(self, path: Path, kind: str, version: int = 1) -> None:
        self.path = path
        self._kind = kind
        self._version = version

    def load(self) -> dict[str, dict[str, object]]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict) or raw.get("version") != self._version:
            return {}
        records = raw.get(self._kind)
        return records if isinstance(records, dict) else {}

    def save(self, records: dict[str, dict[str, object]]) -> None:
        """Raises OSError where the file cannot be written."""
        text = json.dumps({"version": self._version, self._kind: records}, indent=2) + "\n"
        atomic_write_text(self.path, text)

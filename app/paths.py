"""Every location Hearth reads or writes on disk.

Locations come from platformdirs (app name "Hearth"). Setting ``HEARTH_HOME`` puts everything under
one folder instead, for tests and portable installs. Nothing is ever written next to the code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "Hearth"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def chats_db(self) -> Path:
        return self.data_dir / "chats.sqlite3"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def partial_dir(self) -> Path:
        """Unfinished downloads: outside the models folder so they never look like models."""
        return self.data_dir / "partial"

    @property
    def downloads_file(self) -> Path:
        """The download queue, so downloads resume after a restart or a kill."""
        return self.data_dir / "downloads.json"

    @property
    def gguf_cache_file(self) -> Path:
        return self.cache_dir / "gguf-headers.json"

    @property
    def safe_mode_file(self) -> Path:
        """Processors (with a llama.cpp build) on which llama.cpp's fast CPU kernels crashed."""
        return self.data_dir / "safe-cpu-mode.json"

    @property
    def crashed_models_file(self) -> Path:
        """Model files whose loading crashed the engine (app/engine/crashed_models.py)."""
        return self.data_dir / "crashed-models.json"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "hearth.log"

    @property
    def engine_log_file(self) -> Path:
        """The engine process's log: its own file, so two processes never rotate one."""
        return self.log_dir / "engine.log"

    def ensure(self) -> None:
        for d in (self.config_dir, self.data_dir, self.cache_dir, self.log_dir, self.models_dir):
            d.mkdir(parents=True, exist_ok=True)


def get_paths() -> Paths:
    home = os.environ.get("HEARTH_HOME")
    if home:
        root = Path(home).expanduser()
        return Paths(root / "config", root / "data", root / "cache", root / "logs")
    return Paths(
        Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
    )

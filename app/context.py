"""What every front end (GUI, CLI) starts from: paths, settings and the model library."""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.types import LoadParams
from app.hub import set_offline
from app.library import LibraryEntry, ModelLibrary
from app.paths import Paths, get_paths
from app.settings import Settings, load_settings, save_settings


@dataclass
class AppContext:
    paths: Paths
    settings: Settings
    library: ModelLibrary

    @classmethod
    def open(cls) -> AppContext:
        paths = get_paths()
        paths.ensure()
        settings = load_settings(paths.settings_file)
        ctx = cls(paths, settings, ModelLibrary(paths, settings))
        ctx.library._save_settings = ctx.save_settings
        set_offline(settings.offline)
        return ctx

    def save_settings(self) -> None:
        set_offline(self.settings.offline)
        save_settings(self.settings, self.paths.settings_file)

    def load_params(self) -> LoadParams:
        s = self.settings
        return LoadParams(
            context_length=s.context_length,
            threads=s.threads,
            gpu_layers=s.gpu_layers,
            flash_attention=s.flash_attention,
            chat_template_override=s.chat_template_override,
        )

    def default_model(self, models: list[LibraryEntry]) -> LibraryEntry | None:
        """The last model used if it is still there, else the first usable one."""
        usable = [m for m in models if m.usable]
        for m in usable:
            if str(m.path) == self.settings.last_model:
                return m
        return usable[0] if usable else None

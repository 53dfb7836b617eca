"""What every front end (GUI, CLI) starts from: paths, settings and the model library."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from app.engine.types import LoadParams
from app.hardware import default_threads
from app.hub import set_offline
from app.library import LibraryEntry, ModelLibrary
from app.paths import Paths, get_paths
from app.settings import Settings, SettingsNotSaved, load_settings, save_settings


@dataclass
class AppContext:
    paths: Paths
    settings: Settings
    library: ModelLibrary
    # Where a failed save is told (the window shows it); without one, save_settings raises.
    on_save_error: Callable[[str], None] | None = field(default=None, repr=False)

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
        """Write the settings; on a full disk (or a read-only folder) the file keeps its last
        good content, the settings apply until Hearth quits, and the user is told."""
        set_offline(self.settings.offline)
        try:
            save_settings(self.settings, self.paths.settings_file)
        except OSError as e:
            message = (
                f"The settings could not be saved ({e.strerror or e}); they apply until Hearth "
                "quits."
            )
            if self.on_save_error is None:
                raise SettingsNotSaved(message) from None
            self.on_save_error(message)

    def load_params(self) -> LoadParams:
        s = self.settings
        return LoadParams(
            context_length=s.context_length,
            threads=s.threads or default_threads(),  # 0: Automatic
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

"""What every front end (GUI, CLI) starts from: paths, settings and the model library."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.engine import auto_fit
from app.engine.routing import parse_remote_path
from app.engine.types import LoadedModel, LoadParams
from app.hardware import default_threads
from app.hub import fit, set_offline
from app.library import LibraryEntry, ModelLibrary
from app.model_file import InvalidModelFile
from app.paths import Paths, get_paths
from app.settings import (
    V4_DEFAULT_CONTEXT,
    Settings,
    SettingsNotSaved,
    load_settings,
    save_settings,
)

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    paths: Paths
    settings: Settings
    library: ModelLibrary
    # Where a failed save is told (the window shows it); without one, save_settings raises.
    on_save_error: Callable[[str], None] | None = field(default=None, repr=False)
    # How the last model loaded through load_params(path) had its context and GPU layers chosen
    # (automatically or as set): what the chat page's status line says.
    last_fit: auto_fit.LoadFit | None = field(default=None, repr=False)

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

    def load_params(
        self,
        path: str = "",
        *,
        context_length: int | None = None,
        replacing: LoadedModel | None = None,
        keep: bool = False,
    ) -> LoadParams:
        """How the model at ``path`` loads: the settings, with "Automatic" context length and
        GPU layers worked out now from the file and this computer's free memory
        (app/engine/auto_fit.py).

        Args:
            path: the model file; without one (or for a connection's model), "Automatic"
                means the old fixed defaults (4096 tokens, every layer on a GPU build).
            context_length: the chat's own context length, in place of the setting's.
            replacing: the model the engine holds now, whose memory the load frees.
            keep: ``path`` is loaded (or loading) with the last choices made for it: keep them
                while the settings asked for are the same, rather than reload it because free
                memory moved.
        """
        s = self.settings
        context = s.context_length if context_length is None else context_length
        params = LoadParams(
            context_length=context or V4_DEFAULT_CONTEXT,
            threads=s.threads or default_threads(),  # 0: Automatic
            gpu_layers=s.gpu_layers,
            flash_attention=s.flash_attention,
            chat_template_override=s.chat_template_override,
        )
        if not path or parse_remote_path(path):
            return params
        last = self.last_fit
        if (
            keep
            and last is not None
            and (last.path, last.requested) == (path, (context, s.gpu_layers))
        ):
            return replace(params, context_length=last.context_length, gpu_layers=last.gpu_layers)
        try:
            chosen = self._fit(Path(path), context, s.gpu_layers, replacing)
        except (InvalidModelFile, OSError) as e:  # the load itself says what is wrong
            log.info("no automatic fit for %s: %s", path, e)
            return params
        self.last_fit = chosen
        return replace(params, context_length=chosen.context_length, gpu_layers=chosen.gpu_layers)

    @staticmethod
    def _fit(
        path: Path, context: int, gpu_layers: int, replacing: LoadedModel | None
    ) -> auto_fit.LoadFit:
        layout = auto_fit.read_layout(path)
        machine = fit.this_machine()
        if replacing is not None and not parse_remote_path(replacing.path):
            try:  # the model held now gives its memory back as this one loads
                old = auto_fit.read_layout(Path(replacing.path))
            except (InvalidModelFile, OSError):
                old = None
            if old is not None:
                ram, vram = old.footprint(replacing.context_length, replacing.gpu_layers)
                machine = replace(
                    machine,
                    ram_available=machine.ram_available + ram,
                    vram_free=machine.vram_free + (vram if machine.vram_free else 0),
                )
        return auto_fit.choose(
            layout,
            machine,
            context_length=context,
            gpu_layers=gpu_layers,
            gpu_offload=bool(fit.gpu_backend()),
            path=str(path),
        )

    def estimate_context(self) -> int:
        """The context length fit badges judge a model at: the setting, or for "Automatic"
        (which shortens the context to fit) auto_fit.ESTIMATE_CONTEXT."""
        return auto_fit.context_for_estimates(self.settings.context_length)

    def default_model(self, models: list[LibraryEntry]) -> LibraryEntry | None:
        """The last model used if it is still there, else the first usable one."""
        usable = [m for m in models if m.usable]
        for m in usable:
            if str(m.path) == self.settings.last_model:
                return m
        return usable[0] if usable else None

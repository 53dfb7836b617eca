"""The Hugging Face Hub: search GGUF models, a repo's GGUF files (sizes, sha256, quant labels),
model cards, the start of a file's GGUF header, and checking a token.

Requests go through huggingface_hub's HTTP session, headers and error mapping, to the Hub's
documented JSON API; ``HF_ENDPOINT`` (mirrors, our tests) and ``HF_HUB_OFFLINE`` work as they do
for every Hub client. Nothing here runs unless the user asks.
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
PREFERRED = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q4_0", "Q4_1", "Q6_K", "Q8_0")


class HubError(Exception):
    """A Hub request failed; ``str(e)`` is meant for the user."""


class OfflineError(HubError):
    pass


class NotFoundError(HubError):
    pass


class GatedError(HubError):
    """The repo needs a token whose owner accepted its terms."""


DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_MESSAGE = "Hearth is in offline mode: it opens no connection. Turn it off in Settings."
_offline_setting = False


def endpoint() -> str:
    """The Hub's address: ``HF_ENDPOINT`` when set (read now, not at import), else the default."""
    return (os.environ.get("HF_ENDPOINT") or "").rstrip("/") or DEFAULT_ENDPOINT


def set_offline(value: bool) -> None:
    """The Settings switch; ``HF_HUB_OFFLINE`` turns offline mode on whatever it says."""
    global _offline_setting
    _offline_setting = value


def offline() -> bool:
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or _offline_setting


def repo_url(repo_id: str) -> str:
    return f"{endpoint()}/{repo_id}"


def quant_label(filename: str) -> str:
    m = _QUANT_RE.search(PurePosixPath(filename).name)
    return m.group(1).upper().replace("FP16", "F16") if m else "other"


MAX_NAME_BYTES = 255  # what most file systems allow for one name
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {
    f"{d}{i}" for d in ("COM", "LPT") for i in range(10)
}


def safe_relative_path(name: str) -> PurePosixPath:
    """A repo file name as a relative path, refusing anything that could leave its folder."""
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or name.startswith("/")
        or re.match(r"^[A-Za-z]:", name)
    ):
        raise HubError(f"The repository lists an unsafe file name: {name[:120]!r}")
    path = PurePosixPath(name)
    if any(
        part in ("..", ".", "")
        or len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
        or part.rstrip(". ") != part  # Windows drops trailing dots and spaces: another name
        or part.split(".")[0].upper() in _WINDOWS_DEVICES  # CON.gguf is the console there
        or any(ord(c) < 32 for c in part)
        for part in path.parts
    ):
        raise HubError(f"The repository lists an unsafe file name: {name[:120]!r}")
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

    def to_json(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "quant": self.quant,
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoteModel:
        files = [RemoteFile(str(f["name"]), int(f["size"]), f.get("sha256")) for f in data["files"]]
        for f in files:
            safe_relative_path(f.name)
        return cls(str(data["repo_id"]), str(data["quant"]), files)


SORTS = {
    "trending": "trendingScore",
    "downloads": "downloads",
    "likes": "likes",
    "updated": "lastModified",
}
# The Hub's parameter-count filter (``num_parameters=min:..,max:..``), as people think of sizes.
SIZES = {
    "any": "",
    "small": "max:3B",
    "medium": "min:3B,max:9B",
    "large": "min:9B,max:35B",
    "huge": "min:35B",
}
_EXPAND = ("downloads", "likes", "lastModified", "gated", "gguf", "pipeline_tag", "trendingScore")
TIMEOUT = 20.0


@dataclass(frozen=True)
class SearchResult:
    repo_id: str
    downloads: int
    likes: int
    last_modified: str
    gated: bool
    parameters: int = 0  # from the Hub's GGUF metadata; 0 when it has none
    architecture: str = ""
    context_length: int = 0

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> SearchResult:
        gguf = _dict(item.get("gguf"))
        return cls(
            repo_id=str(item.get("id") or item.get("modelId") or ""),
            downloads=_int(item.get("downloads")),
            likes=_int(item.get("likes")),
            last_modified=str(item.get("lastModified") or ""),
            gated=bool(item.get("gated")),
            parameters=_int(gguf.get("total")),
            architecture=str(gguf.get("architecture") or ""),
            context_length=_int(gguf.get("context_length")),
        )


@dataclass
class SearchPage:
    results: list[SearchResult]
    next_url: str | None  # the Hub's ``Link: <...>; rel="next"``, or None on the last page


@dataclass
class ModelDetails:
    """What a model page shows: the repo's facts, its GGUF models and (fetched apart) its card."""

    repo_id: str
    license: str | None
    gated: bool
    downloads: int
    likes: int
    last_modified: str
    parameters: int
    architecture: str
    context_length: int
    models: list[RemoteModel]


def _explain(e: Exception, repo_id: str = "") -> HubError:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
    )

    if isinstance(e, HubError):
        return e
    if isinstance(e, GatedRepoError):
        return gated_error(repo_id)
    if isinstance(e, RepositoryNotFoundError):
        return NotFoundError(
            f"{repo_id or 'The model'} was not found on the Hub (or it is private)."
        )
    if isinstance(e, EntryNotFoundError):
        return NotFoundError("That file was not found on the Hub.")
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if e.response is not None else 0
        if status == 401:
            return HubError(
                "The Hub asks for a valid access token (HTTP 401): add or check it in Settings."
            )
        if status == 403:
            return HubError(
                "The Hub refused access (HTTP 403): the model may be gated (accept its terms on "
                "its page) or the token lacks permission."
            )
        if status == 404:
            return NotFoundError(f"{repo_id or 'That'} was not found on the Hub (HTTP 404).")
        if status == 429:
            return HubError("The Hub is rate-limiting requests; wait a minute and try again.")
        if status >= 500:
            return HubError(f"The Hub is having trouble (HTTP {status}); try again later.")
        return HubError(f"The Hub answered with an error (HTTP {status}).")
    name = type(e).__name__
    if any(word in name for word in ("Connect", "Timeout", "Network", "Transport", "Proxy")):
        return HubError("The Hugging Face Hub cannot be reached. Check the network connection.")
    return HubError(f"The Hub request failed: {e}")


def gated_error(repo_id: str) -> GatedError:
    return GatedError(
        f"{repo_id} is gated or private: accept its terms on its Hub page ({repo_url(repo_id)}) "
        "and add a Hugging Face token in Settings."
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _get(
    url: str, token: str | None, params: Any = None, headers: Any = None, check: bool = True
) -> Any:
    """One GET to the Hub, with its errors turned into plain words. Returns the response;
    with ``check=False`` an HTTP error status is returned too, for the caller to explain."""
    if offline():
        raise OfflineError(OFFLINE_MESSAGE)
    from huggingface_hub import get_session
    from huggingface_hub.utils import (  # type: ignore[attr-defined]
        build_hf_headers,
        hf_raise_for_status,
    )

    try:
        r = get_session().get(
            url,
            params=params,
            headers={**build_hf_headers(token=token or False), **(headers or {})},
            timeout=TIMEOUT,
            follow_redirects=True,
        )
        if check:
            hf_raise_for_status(r)
    except Exception as e:
        raise _explain(e, _repo_in(url)) from None
    return r


def _repo_in(url: str) -> str:
    m = re.search(r"/api/models/([^/?]+/[^/?]+)|^https?://[^/]+/([^/]+/[^/]+)/resolve/", url)
    return (m.group(1) or m.group(2)) if m else ""


def search_page(
    query: str = "",
    sort: str = "trending",
    size: str = "any",
    limit: int = 30,
    token: str | None = None,
    next_url: str | None = None,
) -> SearchPage:
    """One page of GGUF models on the Hub; pass ``next_url`` from the last page for the next."""
    if next_url:
        r = _get(next_url, token)
    else:
        params: list[tuple[str, str | int]] = [("filter", "gguf"), ("limit", limit)]
        if query.strip():
            params.append(("search", query.strip()))
        params += [("sort", SORTS.get(sort, sort)), ("direction", -1)]
        if SIZES.get(size):
            params.append(("num_parameters", SIZES[size]))
        params += [("expand[]", e) for e in _EXPAND]
        r = _get(f"{endpoint()}/api/models", token, params=params)
    try:
        items = r.json()
    except ValueError:
        raise HubError("The Hub sent a search answer Hearth cannot read.") from None
    results = [SearchResult.from_json(i) for i in items if isinstance(i, dict)]
    nxt = r.links.get("next", {}).get("url")
    return SearchPage([x for x in results if x.repo_id], nxt or None)


def model_details(repo_id: str, token: str | None = None) -> ModelDetails:
    """The repo's facts and GGUF models (split files grouped, vision projectors left out)."""
    safe_relative_path(repo_id)
    r = _get(f"{endpoint()}/api/models/{repo_id}", token, {"blobs": "true"})
    try:
        info = r.json()
    except ValueError:
        raise HubError(f"The Hub sent an answer about {repo_id} Hearth cannot read.") from None
    groups: dict[str, RemoteModel] = {}
    for sibling in info.get("siblings") or []:
        name = str(sibling.get("rfilename") or "")
        if not name.lower().endswith(".gguf") or "mmproj" in name.lower():
            continue
        safe_relative_path(name)
        lfs = _dict(sibling.get("lfs"))
        remote = RemoteFile(
            name, _int(sibling.get("size")) or _int(lfs.get("size")), lfs.get("sha256")
        )
        shard = shard_info(PurePosixPath(name))  # type: ignore[arg-type]
        key = str(PurePosixPath(name).parent / shard[0]) if shard else name
        groups.setdefault(key, RemoteModel(repo_id, quant_label(name))).files.append(remote)
    models = [m for m in groups.values() if _complete(m)]
    for m in models:
        m.files.sort(key=lambda f: f.name)
    card = _dict(info.get("cardData"))
    gguf = _dict(info.get("gguf"))
    license_ = card.get("license") or next(
        (t.split(":", 1)[1] for t in info.get("tags") or [] if str(t).startswith("license:")), None
    )
    return ModelDetails(
        repo_id=str(info.get("id") or repo_id),
        license=str(license_) if license_ else None,
        gated=bool(info.get("gated")),
        downloads=_int(info.get("downloads")),
        likes=_int(info.get("likes")),
        last_modified=str(info.get("lastModified") or ""),
        parameters=_int(gguf.get("total")),
        architecture=str(gguf.get("architecture") or ""),
        context_length=_int(gguf.get("context_length")),
        models=sorted(models, key=lambda m: m.size),
    )


def list_models(repo_id: str, token: str | None = None) -> list[RemoteModel]:
    return model_details(repo_id, token).models


def whoami(token: str) -> str:
    """The Hub account name of ``token``; raises HubError when the Hub refuses it."""
    r = _get(f"{endpoint()}/api/whoami-v2", token, check=False)
    if r.status_code == 401:
        raise HubError("The Hub refused this token. Check that it was copied whole.")
    if r.status_code != 200:
        raise HubError(f"The Hub could not check the token (HTTP {r.status_code}).")
    try:
        return str(r.json()["name"])
    except (ValueError, KeyError, TypeError):
        raise HubError("The Hub sent an answer about the token Hearth cannot read.") from None


CARD_LIMIT = 512 * 1024


def model_card(repo_id: str, token: str | None = None) -> str:
    """The repo's README.md without its YAML front matter ("" when it has none)."""
    from huggingface_hub import hf_hub_url

    try:
        r = _get(hf_hub_url(repo_id, "README.md", endpoint=endpoint()), token)
    except (NotFoundError, GatedError):
        return ""  # no card, or (as on the real Hub) behind the gate with the files
    text: str = r.content[:CARD_LIMIT].decode("utf-8", errors="replace")
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            text = text[end + 4 :].lstrip("\n")
    return text


HEADER_BYTES = 1 << 20


def remote_header(model: RemoteModel, token: str | None = None) -> dict[str, Any]:
    """The GGUF metadata at the start of the model's first file, read with one Range request.

    Enough for the KV-cache size (layers, KV heads, head size); the vocabulary that follows is
    not needed, so at most ``HEADER_BYTES`` are fetched.
    """
    from huggingface_hub import hf_hub_url

    from app.model_file import InvalidModelFile, read_header_prefix

    url = hf_hub_url(model.repo_id, model.files[0].name, endpoint=endpoint())
    r = _get(url, token, headers={"Range": f"bytes=0-{HEADER_BYTES - 1}"})
    try:
        return read_header_prefix(r.content[:HEADER_BYTES])
    except InvalidModelFile as e:
        raise HubError(f"{model.files[0].name} on the Hub is not a usable GGUF file: {e}") from None


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

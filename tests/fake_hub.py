"""A local fake of the Hugging Face Hub on 127.0.0.1, answering with the real Hub's shapes.

Model search (``/api/models``), model info with file sizes and LFS sha256 (``?blobs=true``),
``resolve`` with X-Repo-Commit / X-Linked-Etag / X-Linked-Size and a 302 to another host name that
serves the bytes with Range support, ``X-Error-Code`` for gated and missing repos, and scripted
faults per file (a dropped connection, a stall, 429, 500, throttling, a corrupted byte).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    gated: bool = False
    downloads: int = 1000
    likes: int = 10
    sha_override: dict[str, str] = field(default_factory=dict)
    parameters: int = 135_000_000
    architecture: str = "llama"
    context_length: int = 2048
    license: str = "apache-2.0"
    last_modified: str = "2025-06-01T00:00:00.000Z"
    card: str = ""  # README.md text; a repo's own README.md file wins

    def gguf(self) -> dict[str, Any]:
        return {
            "total": self.parameters,
            "architecture": self.architecture,
            "context_length": self.context_length,
        }


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.faults: dict[str, list[str]] = {}  # file name -> actions for successive byte requests
        self.throttle: float = 0.0  # bytes per second, 0 = unlimited
        self.search_delays: dict[str, float] = {}  # search text -> seconds before answering
        # Actions for successive API requests (search, model info, whoami), one per request:
        # an HTTP status ("401", "503"), "malformed" JSON, a "truncated" body, a connection
        # "reset", a "stall" after the headers, or a slow "drip" of a whole answer.
        self.api_faults: list[str] = []
        self._drip = False  # the next JSON answer goes out slowly
        self.requests: list[tuple[str, str, str]] = []  # method, path, Range header
        self.authorized_paths: list[str] = []  # paths of requests that carried a token
        self.token = "hf_test_token"
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

            def do_GET(self) -> None:
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo_id: str, files: dict[str, bytes], **kwargs: Any) -> None:
        self.repos[repo_id] = FakeRepo(files, **kwargs)

    # responses

    def _json(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if self._drip:  # a slow network: the whole answer, a little at a time
            self._drip = False
            for at in range(0, len(data), max(1, len(data) // 20)):
                h.wfile.write(data[at : at + max(1, len(data) // 20)])
                h.wfile.flush()
                time.sleep(0.05)
            return
        h.wfile.write(data)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        self._json(
            h, status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message}
        )

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        return h.headers.get("Authorization") == f"Bearer {self.token}"

    def _handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        url = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        self.requests.append((h.command, path, h.headers.get("Range", "")))
        if h.headers.get("Authorization"):
            self.authorized_paths.append(path)
        if path.startswith("/api/") and self.api_faults and self._api_fault(h):
            return None
        if path == "/api/models":
            return self._search(h, query)
        if path == "/api/whoami-v2":
            if self._authorized(h):
                return self._json(h, 200, {"type": "user", "name": "tester"})
            return self._error(h, 401, "", "Invalid credentials in Authorization header")
        if path.startswith("/api/models/"):
            repo_id = path[len("/api/models/") :].split("/revision/")[0]
            return self._info(h, repo_id)
        if path.startswith("/cdn/"):
            return self._bytes(h, path[len("/cdn/") :], head)
        if "/resolve/" in path:
            repo_id, _, rest = path.lstrip("/").partition("/resolve/")
            _rev, _, name = rest.partition("/")
            return self._resolve(h, repo_id, name, head)
        self._error(h, 404, "RepoNotFound", "Not found")

    def _api_fault(self, h: BaseHTTPRequestHandler) -> bool:
        """Answer with the next scripted fault; False when it is "drip" (answered slowly by
        the normal handler: see ``_json``)."""
        action = self.api_faults.pop(0)
        if action.isdigit():
            self._error(h, int(action), "", f"Scripted error {action}")
        elif action == "malformed":
            self._raw(h, b'{"id": "acme/x", "oops', 200)
        elif action == "truncated":
            self._raw(h, b'[{"id": "acme/x"}]', 200, claimed=4096)
        elif action == "reset":
            import socket
            import struct

            # SO_LINGER 0: the close sends a TCP reset instead of a clean end.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
        elif action == "stall":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "100")
            h.end_headers()
            h.wfile.flush()
            time.sleep(5)
            h.close_connection = True
        elif action == "drip":
            self._drip = True
            return False
        return True

    def _raw(self, h: BaseHTTPRequestHandler, data: bytes, status: int, claimed: int = 0) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(claimed or len(data)))
        # It closes the connection after this answer, and says so, as a server must: a client
        # otherwise keeps it for the next request, which then races the close ("Server
        # disconnected without sending a response", seen in CI).
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()
        h.close_connection = True

    def _search(self, h: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        text = (query.get("search") or [""])[0].lower()
        time.sleep(self.search_delays.get(text, 0.0))
        limit = int((query.get("limit") or ["1000"])[0])
        cursor = int((query.get("cursor") or ["0"])[0])
        sort = (query.get("sort") or [""])[0]
        low, high = _parameter_range((query.get("num_parameters") or [""])[0])
        repos = [
            (repo_id, repo)
            for repo_id, repo in self.repos.items()
            if text in repo_id.lower() and low <= repo.parameters <= high
        ]
        keys = {
            "downloads": lambda r: r.downloads,
            "likes": lambda r: r.likes,
            "trendingScore": lambda r: r.likes * 10 + r.downloads // 1000,
            "lastModified": lambda r: r.last_modified,
        }
        if sort in keys:
            repos.sort(key=lambda item: keys[sort](item[1]), reverse=True)
        items = [
            {
                "_id": f"id-{repo_id}",
                "id": repo_id,
                "likes": repo.likes,
                "downloads": repo.downloads,
                "gated": "auto" if repo.gated else False,
                "lastModified": repo.last_modified,
                "gguf": repo.gguf(),
                "pipeline_tag": "text-generation",
            }
            for repo_id, repo in repos[cursor : cursor + limit]
        ]
        headers = {}
        if cursor + limit < len(repos):
            # The real Hub pages with an opaque cursor in a Link header.
            params = {k: v for k, v in query.items() if k != "cursor"}
            params["cursor"] = [str(cursor + limit)]
            nxt = f"{self.url}/api/models?{urllib.parse.urlencode(params, doseq=True)}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._json(h, 200, items, headers)

    def _info(self, h: BaseHTTPRequestHandler, repo_id: str) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", f"Repository {repo_id} not found")
        siblings = []
        for name, data in repo.files.items():
            sha = repo.sha_override.get(name, hashlib.sha256(data).hexdigest())
            siblings.append(
                {
                    "rfilename": name,
                    "size": len(data),
                    "blobId": sha[:40],
                    "lfs": {"sha256": sha, "size": len(data), "pointerSize": 134},
                }
            )
        self._json(
            h,
            200,
            {
                "_id": f"id-{repo_id}",
                "id": repo_id,
                "sha": COMMIT,
                "private": False,
                "gated": "auto" if repo.gated else False,
                "disabled": False,
                "downloads": repo.downloads,
                "likes": repo.likes,
                "tags": ["gguf", f"license:{repo.license}"],
                "lastModified": repo.last_modified,
                "cardData": {"license": repo.license},
                "gguf": repo.gguf(),
                "siblings": siblings,
            },
        )

    def _plain(self, h: BaseHTTPRequestHandler, data: bytes, head: bool) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        h.end_headers()
        if not head:
            h.wfile.write(data)

    def _resolve(self, h: BaseHTTPRequestHandler, repo_id: str, name: str, head: bool) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", f"Repository {repo_id} not found")
        if repo.gated and not self._authorized(h):
            return self._error(h, 401, "GatedRepo", f"Access to model {repo_id} is restricted.")
        if name == "README.md" and name not in repo.files and repo.card:
            return self._plain(h, repo.card.encode(), head)
        if name not in repo.files:
            return self._error(h, 404, "EntryNotFound", f"{name} does not exist")
        data = repo.files[name]
        if not name.endswith(".gguf"):
            return self._plain(h, data, head)  # small git files are served in place
        sha = hashlib.sha256(data).hexdigest()
        h.send_response(302)
        # Large files live on another host (the real Hub's CDN); "localhost" is another name here.
        h.send_header(
            "Location", f"http://localhost:{self.port}/cdn/{repo_id}/{urllib.parse.quote(name)}"
        )
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("X-Linked-Etag", f'"{sha}"')
        h.send_header("X-Linked-Size", str(len(data)))
        h.send_header("ETag", f'"{sha[:40]}"')
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _bytes(self, h: BaseHTTPRequestHandler, rest: str, head: bool) -> None:
        owner, repo_name, name = rest.split("/", 2)
        repo = self.repos[f"{owner}/{repo_name}"]
        data = repo.files[name]
        action = self.faults.get(name, []).pop(0) if self.faults.get(name) else ""
        if action.startswith("429"):
            return self._json(
                h, 429, {"error": "Too many requests"}, {"Retry-After": action.split(":")[1]}
            )
        if action == "500":
            return self._json(h, 500, {"error": "Internal error"})
        if action == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start, end = 0, len(data)
        rng = h.headers.get("Range", "")
        if rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            start = int(first or 0)
            end = min(int(last) + 1, len(data)) if last else len(data)
        if start >= len(data) and data:
            h.send_response(416)
            h.send_header("Content-Range", f"bytes */{len(data)}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        body = data[start:end]
        partial = bool(rng) and (start > 0 or end < len(data))
        h.send_response(206 if partial else 200)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        if partial:
            h.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        h.end_headers()
        if head:
            return
        limit = len(body)
        if action.startswith(("drop:", "stall:")):
            limit = int(action.split(":")[1])
        sent = 0
        step = 16384
        try:
            while sent < limit:
                piece = body[sent : min(sent + step, limit)]
                h.wfile.write(piece)
                h.wfile.flush()
                sent += len(piece)
                if self.throttle:
                    time.sleep(len(piece) / self.throttle)
            if action.startswith("stall:"):
                time.sleep(5)  # no bytes: the client must notice and reconnect
            if sent < len(body):
                h.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            pass


def _parameter_range(spec: str) -> tuple[float, float]:
    """The Hub's ``num_parameters=min:3B,max:9B`` filter as numbers."""
    units = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
    low, high = 0.0, float("inf")
    for part in filter(None, spec.split(",")):
        bound, _, value = part.partition(":")
        number = (
            float(value[:-1]) * units[value[-1].upper()] if value[-1:].isalpha() else float(value)
        )
        if bound == "min":
            low = number
        else:
            high = number
    return low, high

"""An HTTP request that any thread can end at once, for the remote engine (app/engine/remote.py).

The request runs on a thread of its own and hands what arrives through a queue, which the reader
polls every ``POLL_SECONDS``: so Stop and a closed reply end a reply at once even while the
request is stuck connecting, resolving a name or waiting for a silent server. Ending a request
also shuts its socket down, which wakes the blocked read, so its thread ends soon after. The
standard library's ``http.client`` does the HTTP: no new dependency, and no proxies from the
environment (these servers are mostly on the LAN, where a corporate proxy would break them).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import queue
import socket
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from app.engine.types import EngineError

if TYPE_CHECKING:
    import http.client

POLL_SECONDS = 0.05  # how often a waiting reader looks at its cancel event
CONNECT_SECONDS = 10.0
READ_SECONDS = 300.0  # a server silent this long is gone (a long prompt can take minutes)
MAX_BODY = 4 << 20
MAX_LINE = 4 << 20


def normalise_url(url: str) -> str:
    """The API root for ``url``: http:// when no scheme is given; a bare address gets ``/v1``
    (``http://host:8080`` and ``http://host:8080/v1/`` are both ``http://host:8080/v1``); any
    other path is taken as the API root as given (``https://host/openai/v1``, ``.../v1beta``)."""
    text = url.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    try:
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number
        ok = False
    if not ok:
        raise EngineError(f"{url!r} is not a server address like http://127.0.0.1:8080/v1.")
    netloc = parts.netloc.rpartition("@")[2]  # credentials in the address are not sent
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") or "/v1", "", ""))


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this computer (127.0.0.0/8, ::1, localhost): the only servers
    offline mode lets Hearth connect to."""
    host = urlsplit(url if "://" in url else f"//{url}").hostname or ""
    if host.rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


class Exchange:
    """One HTTP request to ``root`` + ``path`` on its own thread. ``items`` receives
    ("unreachable", error), or ("status", code) then the body: ("body", bytes), or, when the
    request accepts ``text/event-stream`` and the status is 200, ("line", bytes)... ("eof", None);
    ("lost", error) when the connection fails after it was made."""

    def __init__(
        self, root: SplitResult, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> None:
        self.items: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.aborted = False
        import http.client  # with ssl, on the first request: the window starts without them

        https = root.scheme == "https"
        host, port = root.hostname or "", root.port or (443 if https else 80)
        if https:
            from app.downloads.net import _tls  # the CA bundle the downloads use

            self._conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=CONNECT_SECONDS, context=_tls()
            )
        else:
            self._conn = http.client.HTTPConnection(host, port, timeout=CONNECT_SECONDS)
        self._request, self._headers = (method, root.path + path, body), headers
        self._stream = headers.get("Accept") == "text/event-stream"
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None  # ours: http.client drops its own at times
        self._done = False
        self._thread = threading.Thread(target=self._run, name="hearth-remote", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn, put = self._conn, self.items.put
        try:
            try:
                conn.connect()
            except OSError as e:
                put(("unreachable", e))
                return
            with self._lock:
                self._sock = conn.sock
            if self.aborted:  # before the socket was there to shut down
                return
            conn.sock.settimeout(READ_SECONDS)
            method, path, body = self._request
            conn.request(method, path, body, self._headers)
            response = conn.getresponse()
            try:
                put(("status", response.status))
                if response.status != 200 or not self._stream:
                    put(("body", response.read(MAX_BODY)))
                    return
                while line := response.readline(MAX_LINE):
                    put(("line", line))
                put(("eof", None))
            finally:
                response.close()
        except Exception as e:  # OSError, http.client's errors, ValueError after an abort
            put(("lost", e))
        finally:
            with self._lock:
                self._done = True
                conn.close()

    def abort(self) -> None:
        """End the request from any thread: a blocked read returns at once."""
        with self._lock:
            self.aborted = True
            if self._sock is not None and not self._done:
                # The plain socket's shutdown: an SSLSocket's would unwrap under the reader.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def next(self, cancel: threading.Event) -> tuple[str, Any] | None:
        """What arrived next, or None once ``cancel`` is set or the request was aborted."""
        while not (cancel.is_set() or self.aborted):
            try:
                item = self.items.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            # An abort while waiting ends the read with an error or an early end: not news.
            return None if cancel.is_set() or self.aborted else item
        return None

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def unreachable_reason(error: OSError) -> str:
    """Why a connection could not be made, in plain words."""
    if isinstance(error, ConnectionRefusedError):
        return "nothing answers there (connection refused)"
    if isinstance(error, socket.gaierror):
        return "no such host name"
    if isinstance(error, TimeoutError):
        return f"no answer in {CONNECT_SECONDS:.0f} s"
    return error.strerror or str(error)


def error_message(body: bytes) -> str:
    """The message in an error body: OpenAI's ``{"error": {"message": ...}}`` and its kin."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict):
        error = data.get("error", data)
        found = error.get("message", error.get("detail")) if isinstance(error, dict) else error
        if isinstance(found, str):
            return " ".join(found.split())[:300]
    return ""

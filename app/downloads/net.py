"""The HTTP GET under a download: the standard library's client, read as the network delivers.

Measured on loopback (bench/downloads.py): reading a response with ``read1`` runs as fast as curl,
where huggingface_hub's httpx stack (64 KiB reads through several layers of Python per chunk)
reached half of it. urllib's opener still gives us proxies from the environment (HTTPS_PROXY,
NO_PROXY) and TLS; redirects are followed here so the token goes only to the host it was meant
for, never to the storage host the Hub redirects large files to.
"""

from __future__ import annotations

import functools
import ssl
import urllib.error
import urllib.request
from email.message import Message
from typing import Any
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 10
READ_SIZE = 1 << 20


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # hand the 3xx back to get(), which decides what the next request carries


@functools.cache
def _tls() -> ssl.SSLContext:
    try:
        import certifi  # the CA bundle httpx uses: python.org macOS builds have none of their own

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirect(), urllib.request.HTTPSHandler(context=_tls()))


class Response:
    """A status, headers, and the body in pieces of at most ``READ_SIZE`` bytes."""

    def __init__(self, status: int, headers: Message, raw: Any) -> None:
        self.status = status
        self.headers = headers
        self._raw = raw

    def read1(self) -> bytes:
        data: bytes = self._raw.read1(READ_SIZE)
        return data

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(url: str, headers: dict[str, str], timeout: float) -> Response:
    """GET ``url``, following redirects; ``Authorization`` goes only to the first host.

    ``timeout`` bounds the connection and every read: no bytes for that long raises TimeoutError.
    Network failures raise OSError (URLError is one); HTTP error statuses are returned, not raised.
    """
    origin = urlsplit(url).netloc
    for _ in range(MAX_REDIRECTS):
        same_host = urlsplit(url).netloc == origin
        sent = {k: v for k, v in headers.items() if same_host or k.lower() != "authorization"}
        request = urllib.request.Request(url, headers=sent)
        try:
            raw = _opener().open(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            raw = e
        status = raw.getcode()
        location = raw.headers.get("Location")
        if status in (301, 302, 303, 307, 308) and location:
            raw.close()
            url = urljoin(url, location)
            continue
        return Response(status, raw.headers, raw)
    raise OSError(f"more than {MAX_REDIRECTS} redirects")

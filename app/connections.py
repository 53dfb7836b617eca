"""Connections: OpenAI-compatible servers whose models the window and ``hearth chat`` can use.

The list is in the settings (name and URL); a connection's API key only in the keyring. Offline
mode blocks every connection except one on this computer (loopback), and says so.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from app import secrets
from app.engine.remote import RemoteEngine, is_loopback
from app.engine.routing import remote_path
from app.engine.types import EngineError
from app.settings import Connection, Settings


def offline_refusal(connection: Connection, settings: Settings) -> str:
    """Why offline mode forbids this connection ("" when it does not)."""
    if settings.offline and not is_loopback(connection.url):
        return (
            f"Offline mode is on: Hearth does not connect to {connection.name} "
            f"({connection.url}). Connections to this computer still work."
        )
    return ""


def find(settings: Settings, name: str) -> Connection:
    for c in settings.connections:
        if c.name == name:
            return c
    raise EngineError(f"There is no connection named {name!r} (Settings → Connections).")


def engine_for(settings: Settings, name: str) -> RemoteEngine:
    connection = find(settings, name)
    refusal = offline_refusal(connection, settings)
    if refusal:
        raise EngineError(refusal)
    key = secrets.get_secret(secrets.connection_key_account(name)) or ""
    return RemoteEngine(connection.url, key, name)


@dataclass(frozen=True)
class RemoteModels:
    """What a connection offers now: its models as (label, path) for the picker, or why none."""

    connection: str
    models: list[tuple[str, str]]
    error: str = ""


def list_models(settings: Settings, cancel: threading.Event | None = None) -> list[RemoteModels]:
    """Ask every connection for its models (network: call off the GUI thread)."""
    found = []
    for c in settings.connections:
        refusal = offline_refusal(c, settings)
        if refusal:
            found.append(RemoteModels(c.name, [], refusal))
            continue
        engine = engine_for(settings, c.name)
        try:
            ids = engine.models(cancel)
        except EngineError as e:
            found.append(RemoteModels(c.name, [], str(e)))
            continue
        finally:
            engine.close()
        found.append(
            RemoteModels(c.name, [(f"{m} — {c.name}", remote_path(c.name, m)) for m in ids])
        )
    return found

"""Secrets — the Hugging Face token, the API server's key, connections' keys — only in the OS
keyring (or an environment variable), never in a file.

When no keyring backend works (headless Linux without a Secret Service), a secret can still be
kept in this process's memory for the session; the caller is told so and can say it to the user.
"""

from __future__ import annotations

import logging
import os
from enum import Enum

log = logging.getLogger(__name__)
SERVICE = "Hearth"
ACCOUNT = "huggingface-token"
SERVER_KEY = "api-server-key"  # the key clients of Hearth's API server must send
_session: dict[str, str] = {}
_said: set[str] = set()


def connection_key_account(name: str) -> str:
    """The keyring account of a connection's API key (Settings → Connections)."""
    return f"connection:{name}"


def _say_once(message: str) -> None:
    """Log a keyring problem once per process: every Hub request asks for the token (it filled
    35 of 80 lines of a log)."""
    if message not in _said:
        _said.add(message)
        log.info("%s", message)


class Stored(str, Enum):
    KEYRING = "keyring"
    SESSION = "session"  # no usable keyring: kept in memory until Hearth quits


def get_secret(account: str) -> str | None:
    if _session.get(account):
        return _session[account]
    try:
        import keyring

        value = keyring.get_password(SERVICE, account)
    except Exception as e:  # no backend, a locked or broken one: never stop the app for it
        _say_once(f"no usable keyring ({e}); no {account}")
        return None
    return value or None


def set_secret(account: str, value: str) -> Stored:
    """Keep ``value`` in the OS keyring, or for this session only when there is none."""
    try:
        import keyring

        keyring.set_password(SERVICE, account, value)
    except Exception as e:
        log.info("no usable keyring (%s); %s is kept for this session only", e, account)
        _session[account] = value
        return Stored.SESSION
    _session.pop(account, None)
    return Stored.KEYRING


def delete_secret(account: str) -> None:
    _session.pop(account, None)
    try:
        import keyring

        keyring.delete_password(SERVICE, account)
    except Exception as e:  # nothing stored, or no keyring: either way there is none now
        log.info("no %s deleted from the keyring (%s)", account, e)


def get_token() -> str | None:
    return os.environ.get("HF_TOKEN") or get_secret(ACCOUNT)


def token_from_env() -> bool:
    return bool(os.environ.get("HF_TOKEN"))


def set_token(token: str) -> Stored:
    return set_secret(ACCOUNT, token)


def delete_token() -> None:
    delete_secret(ACCOUNT)

"""The Hugging Face token: only in the OS keyring (or the HF_TOKEN variable), never in a file.

When no keyring backend works (headless Linux without a Secret Service), a token can still be
kept in this process's memory for the session; the caller is told so and can say it to the user.
"""

from __future__ import annotations

import logging
import os
from enum import Enum

log = logging.getLogger(__name__)
SERVICE = "Hearth"
ACCOUNT = "huggingface-token"
_session_token: str | None = None
_said: set[str] = set()


def _say_once(message: str) -> None:
    """Log a keyring problem once per process: every Hub request asks for the token (it filled
    35 of 80 lines of a log)."""
    if message not in _said:
        _said.add(message)
        log.info("%s", message)


class Stored(str, Enum):
    KEYRING = "keyring"
    SESSION = "session"  # no usable keyring: kept in memory until Hearth quits


def get_token() -> str | None:
    env = os.environ.get("HF_TOKEN")
    if env:
        return env
    if _session_token:
        return _session_token
    try:
        import keyring

        token = keyring.get_password(SERVICE, ACCOUNT)
    except Exception as e:  # no backend, a locked or broken one: never stop the app for it
        _say_once(f"no usable keyring ({e}); no Hub token")
        return None
    return token or None


def token_from_env() -> bool:
    return bool(os.environ.get("HF_TOKEN"))


def set_token(token: str) -> Stored:
    """Keep ``token`` in the OS keyring, or for this session only when there is none."""
    global _session_token
    try:
        import keyring

        keyring.set_password(SERVICE, ACCOUNT, token)
    except Exception as e:
        log.info("no usable keyring (%s); the token is kept for this session only", e)
        _session_token = token
        return Stored.SESSION
    _session_token = None
    return Stored.KEYRING


def delete_token() -> None:
    global _session_token
    _session_token = None
    try:
        import keyring

        keyring.delete_password(SERVICE, ACCOUNT)
    except Exception as e:  # nothing stored, or no keyring: either way there is no token now
        log.info("no token deleted from the keyring (%s)", e)

"""The Hugging Face token: only in the OS keyring (or the HF_TOKEN variable), never in a file."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
SERVICE = "Hearth"
ACCOUNT = "huggingface-token"


def get_token() -> str | None:
    env = os.environ.get("HF_TOKEN")
    if env:
        return env
    try:
        import keyring
        from keyring.errors import KeyringError

        try:
            token = keyring.get_password(SERVICE, ACCOUNT)
        except KeyringError as e:
            log.info("no usable keyring (%s); no Hub token", e)
            return None
        return token or None
    except Exception as e:  # a broken keyring backend must not stop the app
        log.info("keyring unavailable (%s); no Hub token", e)
        return None

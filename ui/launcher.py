"""The ``hearth`` command: the app's window by default, the core's command line otherwise.

It lives here, not in ``app/``, so that the core never imports the GUI.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from app import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, open_window=open_window)


def open_window() -> int:
    try:
        from ui.application import run
    except ImportError as e:
        print(
            f"hearth: the GUI cannot start ({e}). On Linux, install Qt's system libraries "
            "(see the README's Troubleshooting).",
            file=sys.stderr,
        )
        return 1
    return int(run())

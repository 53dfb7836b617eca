"""The ``hearth`` command: the app's window by default, the core's command line otherwise.

It lives here, not in ``app/``, so that the core never imports the GUI.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Sequence

from app import cli

SELF_TEST = "--self-test"


def main(argv: Sequence[str] | None = None) -> int:
    # First of all: in a frozen bundle the engine process (multiprocessing "spawn") and its
    # resource tracker start as this same executable, and must not open a window.
    multiprocessing.freeze_support()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [SELF_TEST]:
        if len(args) > 1:
            print(f"hearth: {SELF_TEST} takes no other arguments", file=sys.stderr)
            return 2
        from ui.self_test import main as self_test

        return self_test()
    return cli.main(args, open_window=open_window)


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

"""The entry point of the frozen bundles (PyInstaller runs this file as ``__main__``).

The console script ``hearth`` runs ``ui.launcher:main`` instead; both end in the same code.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    # Before anything else: the engine process and multiprocessing's resource tracker start as
    # this same executable, with arguments that say so; they must run their task, not the app.
    multiprocessing.freeze_support()
    from ui.launcher import main  # noqa: TID251 (the entry point starts the GUI)

    sys.exit(main())

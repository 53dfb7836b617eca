from app.cli import main

# Guarded: the engine's child process (multiprocessing "spawn") re-imports the main module.
if __name__ == "__main__":
    raise SystemExit(main())

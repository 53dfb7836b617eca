"""Hearth's PySide6 GUI: pages, item models and the thread glue over the core in ``app``."""

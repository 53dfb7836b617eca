"""Static files shipped with Hearth (icons)."""

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent

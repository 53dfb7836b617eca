"""The curated first-download list, kept as data in ``resources/recommended.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from resources import RESOURCES


@dataclass(frozen=True)
class Recommended:
    repo_id: str
    title: str
    parameters: str
    license: str
    size: str
    why: str


def recommended() -> list[Recommended]:
    data = json.loads((RESOURCES / "recommended.json").read_text(encoding="utf-8"))
    return [Recommended(**entry) for entry in data["models"]]

"""A conversation's own settings: sampling, context length and thinking, each optional.

Stored as JSON in the conversation's ``sampling`` column (``{"version": 1, ...}``), only the
values the user set: a value left out (``None`` here) means "the app's default", so changing a
default in Settings reaches every conversation that did not choose otherwise, and "reset to
defaults" is ``ChatSettings()``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from app.settings import Sampling

log = logging.getLogger(__name__)

# The values each setting may take (inclusive); others are refused, or dropped when read.
LIMITS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 5.0),
    "top_p": (0.0, 1.0),
    "top_k": (0, 1_000_000),
    "min_p": (0.0, 1.0),
    "repeat_penalty": (0.0, 5.0),
    "max_tokens": (1, 1_048_576),
    "seed": (-1, 2**63 - 1),  # -1: a fresh random seed for every reply
    "context_length": (256, 1_048_576),
    "thinking_budget": (0, 1_048_576),
}


@dataclass(frozen=True)
class ChatSettings:
    """What one conversation sets for itself; ``None``: the app's default (Settings)."""

    VERSION: ClassVar[int] = 1

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    context_length: int | None = None  # tokens; a model loaded with another size reloads
    # Reasoning models: False turns thinking off where the template supports it
    # (``enable_thinking``); None leaves the model's own default.
    thinking: bool | None = None
    thinking_budget: int | None = None  # most tokens a reply may think for; None: no limit

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            problem = _problem(f.name, getattr(self, f.name))
            if problem:
                raise ValueError(problem)

    @property
    def is_default(self) -> bool:
        """Nothing set: the conversation follows the app's defaults in everything."""
        return self == ChatSettings()

    def replace(self, **changes: Any) -> ChatSettings:
        """A copy with ``changes`` (``None`` puts a setting back to the app's default);
        ``ValueError`` for a value out of range or of the wrong type."""
        return dataclasses.replace(self, **changes)

    def sampling(self, defaults: Sampling) -> Sampling:
        """The sampling for a reply: this conversation's values over the app's ``defaults``."""
        # Over the defaults, so app-wide fields a conversation does not set (drop_oldest) stay.
        return dataclasses.replace(
            defaults,
            temperature=_pick(self.temperature, defaults.temperature),
            top_p=_pick(self.top_p, defaults.top_p),
            top_k=_pick(self.top_k, defaults.top_k),
            min_p=_pick(self.min_p, defaults.min_p),
            repeat_penalty=_pick(self.repeat_penalty, defaults.repeat_penalty),
            max_tokens=_pick(self.max_tokens, defaults.max_tokens),
            seed=_pick(self.seed, defaults.seed),
            enable_thinking=_pick(self.thinking, defaults.enable_thinking),
            thinking_budget=_pick(self.thinking_budget, defaults.thinking_budget),
        ).clamped()

    def context_length_or(self, default: int) -> int:
        return default if self.context_length is None else self.context_length

    def to_json(self) -> dict[str, Any]:
        """What is stored: the version and the values set."""
        out: dict[str, Any] = {"version": self.VERSION}
        out.update({k: v for k, v in dataclasses.asdict(self).items() if v is not None})
        return out

    @classmethod
    def from_json(cls, raw: Any) -> ChatSettings:
        """Settings as stored; a value of the wrong type or out of range, an unknown key or a
        file from elsewhere counts as not set (logged), never as an error."""
        if not isinstance(raw, dict):
            return cls()
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "version" or value is None:
                continue
            if key not in names:
                log.warning("ignoring unknown conversation setting %r", key)
                continue
            if isinstance(value, int) and not isinstance(value, bool) and _is_float(key):
                value = float(value)
            problem = _problem(key, value)
            if problem:
                log.warning("ignoring conversation setting: %s", problem)
                continue
            values[key] = value
        return cls(**values)


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


_FLOATS = {"temperature", "top_p", "min_p", "repeat_penalty"}


def _is_float(name: str) -> bool:
    return name in _FLOATS


def _problem(name: str, value: Any) -> str:
    """Why ``value`` cannot be setting ``name`` ("" when it can)."""
    if value is None:
        return ""
    if name == "thinking":
        return "" if isinstance(value, bool) else f"thinking must be on or off, not {value!r}"
    if isinstance(value, bool):
        return f"{name} must be a number, not {value!r}"
    ok = isinstance(value, int | float) if _is_float(name) else isinstance(value, int)
    if not ok:
        kind = "a number" if _is_float(name) else "a whole number"
        return f"{name} must be {kind}, not {value!r}"
    low, high = LIMITS[name]
    if not low <= value <= high:
        return f"{name} must be from {low:g} to {high:g}, not {value!r}"
    return ""

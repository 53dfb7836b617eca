"""Typed, versioned settings stored as JSON and written atomically.

One registry (the dataclasses below) defines every key; unknown keys in a file are dropped with a
log line, wrong types fall back to the default, and older schema versions are migrated on load.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from app.fileio import atomic_write_text

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5
Theme = Literal["system", "light", "dark"]
FlashAttention = Literal["auto", "on", "off"]


@dataclass
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 1024
    seed: int = -1  # -1: a fresh random seed for every reply
    # Reasoning models: False renders the chat template with enable_thinking off (where it has
    # that switch); a budget ends the thinking after that many tokens (None: no limit).
    enable_thinking: bool = True
    thinking_budget: int | None = None
    # A conversation that outgrows the context: leave out its oldest messages (the system prompt
    # stays), like LM Studio's rolling window; off, the reply is refused and says so.
    drop_oldest: bool = True

    def clamped(self) -> Sampling:
        return dataclasses.replace(
            self,
            temperature=min(max(self.temperature, 0.0), 5.0),
            top_p=min(max(self.top_p, 0.0), 1.0),
            top_k=max(self.top_k, 0),
            min_p=min(max(self.min_p, 0.0), 1.0),
            repeat_penalty=min(max(self.repeat_penalty, 0.0), 5.0),
            max_tokens=max(self.max_tokens, 1),
            thinking_budget=None if self.thinking_budget is None else max(self.thinking_budget, 0),
        )


@dataclass
class Connection:
    """An OpenAI-compatible server whose models the window offers beside local ones (its API
    key, if any, is in the keyring: app/secrets.py)."""

    name: str
    url: str


@dataclass
class Settings:
    version: int = SCHEMA_VERSION
    model_folders: list[str] = field(default_factory=list)
    extra_models: list[str] = field(default_factory=list)  # single files used in place
    threads: int = 0  # 0: Automatic, one per physical core (app/hardware.py: default_threads)
    # 0: Automatic, the model's trained length, at most 32k and shortened to fit free memory
    # (app/engine/auto_fit.py); a number is used as it is (never beyond the trained length).
    context_length: int = 0
    # -1: Automatic, as many layers as fit in free GPU memory with their KV cache (all of them
    # where they fit); 0: none; a number above the model's layers: all. CPU builds use none.
    gpu_layers: int = -1
    # auto: on when layers run on a GPU, off on the CPU, where it slows long conversations
    # (SmolLM2 on 2 cores: generation 142 vs 104 tokens/s at depth 0, but 36 vs 58 at depth 3000).
    flash_attention: FlashAttention = "auto"
    chat_template_override: str = ""  # empty: the model's own template from its GGUF metadata
    default_system_prompt: str = ""
    # At a pause in typing, the model reads the message so far, so that its reply starts at once.
    read_while_typing: bool = True
    # After a new chat's first reply, the model writes its title (as LM Studio does); the first
    # words of the message are the title until then, and stay where this is off.
    model_titles: bool = True
    sampling: Sampling = field(default_factory=Sampling)
    theme: Theme = "system"
    text_size: int = 0  # points for the window's text (Ctrl+plus/minus); 0: the system's size
    last_model: str = ""
    offline: bool = False  # no connection at all, whatever the user clicks (HF_HUB_OFFLINE too)
    download_concurrency: int = 2  # files downloading at once; the rest wait in the queue
    # The OpenAI-compatible API server (`hearth serve`; in the window, Settings → Local server).
    server_enabled: bool = False  # the window starts it at launch
    server_host: str = "127.0.0.1"  # anything but loopback needs an API key (in the keyring)
    server_port: int = 8484
    server_idle_minutes: int = 15  # a model no request used for this long is unloaded; 0: never
    server_cors: bool = False  # let web pages of other origins read replies
    server_save_chats: bool = False  # keep requests and their replies as conversations
    connections: list[Connection] = field(default_factory=list)
    window_geometry: str = ""  # the window's size and place when it last closed (Qt's, base64)
    welcome_shown: bool = False  # the first-run welcome (ui/welcome.py) has been seen


def _migrate(raw: dict[str, Any]) -> dict[str, Any]:
    version = int(raw.get("version", 1))
    # v1 stored the context size as "n_ctx".
    if version < 2 and "n_ctx" in raw:
        raw["context_length"] = raw.pop("n_ctx")
    # v2 had a yes/no flash attention switch; its "yes" meant "where supported", now "auto".
    if version < 3 and isinstance(raw.get("flash_attention"), bool):
        raw["flash_attention"] = "auto" if raw["flash_attention"] else "off"
    # v4's defaults become "Automatic": a context of 4096 (the old default, written into every
    # file) is now chosen per model and machine; a GPU layers of -1 ("all") keeps its value and
    # now means as many as fit, which is all of them wherever "all" could load. Other numbers
    # were the user's choice and stay.
    if version < 5 and raw.get("context_length") == V4_DEFAULT_CONTEXT:
        raw["context_length"] = 0
    # v4 wrote its thread count (half the logical processors past four) into every file: that
    # value was the default, not a choice, and becomes Automatic too.
    if version < 5 and raw.get("threads") == _v4_default_threads():
        raw["threads"] = 0
    raw["version"] = SCHEMA_VERSION
    return raw


V4_DEFAULT_CONTEXT = 4096


def _v4_default_threads() -> int:
    n = os.cpu_count() or 2
    return max(1, min(n if n <= 4 else n // 2, 16))


MIN_CONTEXT = 256  # a set context length is at least this (0 is Automatic)

# Whole numbers a settings file may hold (the Settings page's fields take the same ranges);
# others fall back to the default (a context of -1 tokens would reach llama.cpp otherwise).
RANGES: dict[str, tuple[int, int]] = {
    "threads": (0, 256),  # 0: Automatic
    "context_length": (0, 1_048_576),  # 0: Automatic; 1 to 255 are refused (MIN_CONTEXT)
    "gpu_layers": (-1, 1000),  # -1: Automatic
    "text_size": (0, 40),
    "download_concurrency": (1, 8),
    "server_port": (1, 65535),
    "server_idle_minutes": (0, 24 * 60),
}


def _coerce(cls: type[Any], raw: dict[str, Any]) -> Any:
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        value = raw[f.name]
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            kwargs[f.name] = _coerce(type(default), value)
        elif f.name == "theme":
            kwargs[f.name] = value if value in get_args(Theme) else default
        elif f.name == "connections":
            ok = isinstance(value, list) and all(
                isinstance(v, dict)
                and isinstance(v.get("name"), str)
                and isinstance(v.get("url"), str)
                for v in value
            )
            kwargs[f.name] = [Connection(v["name"], v["url"]) for v in value] if ok else default
        elif f.name == "flash_attention":
            kwargs[f.name] = value if value in get_args(FlashAttention) else default
        elif isinstance(default, bool):
            kwargs[f.name] = value if isinstance(value, bool) else default
        elif isinstance(default, int) and not isinstance(default, bool):
            ok = isinstance(value, int) and not isinstance(value, bool)
            low, high = RANGES.get(f.name, (-(2**63), 2**63 - 1))
            too_short = ok and f.name == "context_length" and 0 < value < MIN_CONTEXT
            if ok and (not low <= value <= high or too_short):
                log.warning("setting %s=%s is out of range; using %s", f.name, value, default)
                ok = False
            kwargs[f.name] = value if ok else default
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            kwargs[f.name] = float(value) if ok else default
        elif isinstance(default, list):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            kwargs[f.name] = value if ok else default
        elif isinstance(default, str):
            kwargs[f.name] = value if isinstance(value, str) else default
        elif f.name == "thinking_budget":  # a whole number of tokens, or None: no limit
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
            kwargs[f.name] = value if ok and (value is None or value >= 0) else default
        else:
            kwargs[f.name] = default
    unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        log.warning("ignoring unknown settings keys: %s", ", ".join(sorted(unknown)))
    return cls(**kwargs)


class SettingsNotSaved(Exception):
    """The settings file could not be written; ``str(e)`` is for the user."""


def load_settings(path: Path) -> Settings:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as e:
        log.error("settings file %s unreadable (%s); using defaults", path, e)
        return Settings()
    if not isinstance(raw, dict):
        return Settings()
    settings: Settings = _coerce(Settings, _migrate(raw))
    return settings


def save_settings(settings: Settings, path: Path) -> None:
    atomic_write_text(path, json.dumps(dataclasses.asdict(settings), indent=2) + "\n")

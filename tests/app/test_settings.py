from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.paths import get_paths
from app.settings import SCHEMA_VERSION, Settings, load_settings, save_settings


def test_defaults_when_missing(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "none.json")
    assert s == Settings()
    assert s.context_length == 0  # Automatic: from the model and free memory (app/engine/auto_fit)
    assert s.gpu_layers == -1  # Automatic: as many layers as fit in free GPU memory
    assert s.flash_attention == "auto"


def test_round_trip_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "settings.json"
    s = Settings(threads=3, theme="dark", model_folders=["/models"])
    s.sampling.temperature = 0.2
    save_settings(s, path)
    assert load_settings(path) == s
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"]


def test_migrates_v1_and_rejects_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "n_ctx": 8192,
                "flash_attention": False,
                "threads": "many",
                "theme": "purple",
                "sampling": {"temperature": 1, "top_k": 1.5},
                "unknown_key": True,
            }
        )
    )
    s = load_settings(path)
    assert s.version == SCHEMA_VERSION
    assert s.context_length == 8192
    assert s.flash_attention == "off"  # v2's boolean switch
    assert s.threads == Settings().threads
    assert s.theme == "system"
    assert s.sampling.temperature == 1.0
    assert s.sampling.top_k == 40


def test_corrupt_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    assert load_settings(path) == Settings()


def test_hearth_home_puts_everything_in_one_folder(hearth_home: Path) -> None:
    paths = get_paths()
    for p in (
        paths.settings_file,
        paths.chats_db,
        paths.models_dir,
        paths.log_file,
        paths.gguf_cache_file,
    ):
        assert hearth_home in p.parents
    assert paths.models_dir not in paths.partial_dir.parents


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("context_length", -1),
        ("context_length", 100),  # under 256 tokens: 0 is Automatic, 1-255 are refused
        ("context_length", 10**12),
        ("threads", 0),
        ("gpu_layers", -5),
    ],
)
def test_numbers_out_of_range_fall_back_to_the_default(
    tmp_path: Path, key: str, value: int
) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": SCHEMA_VERSION, key: value}))
    assert getattr(load_settings(path), key) == getattr(Settings(), key)


@pytest.mark.parametrize(
    ("stored", "migrated"),
    [
        ({"context_length": 4096, "gpu_layers": -1}, (0, -1)),  # v4's defaults: Automatic
        ({"context_length": 8192, "gpu_layers": 20}, (8192, 20)),  # the user's own: kept
        ({"context_length": 4096, "gpu_layers": 0}, (0, 0)),  # CPU only stays CPU only
        ({}, (0, -1)),
    ],
)
def test_v4_defaults_become_automatic_and_chosen_numbers_stay(
    tmp_path: Path, stored: dict[str, int], migrated: tuple[int, int]
) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 4, "theme": "dark", **stored}))
    s = load_settings(path)
    assert (s.context_length, s.gpu_layers) == migrated
    assert (s.version, s.theme) == (SCHEMA_VERSION, "dark")
    save_settings(s, path)  # a second load does not migrate again: 4096 set by hand stays
    s.context_length = 4096
    save_settings(s, path)
    assert load_settings(path).context_length == 4096


def test_an_app_wide_thinking_budget_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings()
    settings.sampling.thinking_budget = 512
    save_settings(settings, path)
    assert load_settings(path).sampling.thinking_budget == 512
    path.write_text(path.read_text().replace('"thinking_budget": 512', '"thinking_budget": -3'))
    assert load_settings(path).sampling.thinking_budget is None  # out of range: the default


def test_v4s_default_thread_count_becomes_automatic(tmp_path: Path) -> None:
    from app.settings import _v4_default_threads

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 4, "threads": _v4_default_threads()}))
    assert load_settings(path).threads == 0
    chosen = _v4_default_threads() + 1
    path.write_text(json.dumps({"version": 4, "threads": chosen}))
    assert load_settings(path).threads == chosen  # set by hand: kept

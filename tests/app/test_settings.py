from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.paths import get_paths
from app.settings import SCHEMA_VERSION, Settings, load_settings, save_settings


def test_defaults_when_missing(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "none.json")
    assert s == Settings()
    assert s.context_length >= 2048  # llama-cpp-python's 512 is a trap
    assert s.gpu_layers == -1
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
    [("context_length", -1), ("context_length", 10**12), ("threads", 0), ("gpu_layers", -5)],
)
def test_numbers_out_of_range_fall_back_to_the_default(
    tmp_path: Path, key: str, value: int
) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": SCHEMA_VERSION, key: value}))
    assert getattr(load_settings(path), key) == getattr(Settings(), key)

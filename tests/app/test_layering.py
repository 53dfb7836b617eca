from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import app

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter at the repository root (nothing imported beforehand)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_core_never_imports_qt_or_the_gui() -> None:
    modules = [
        m.name for m in pkgutil.walk_packages(app.__path__, "app.") if m.name != "app.__main__"
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'ui'))\n"
        "assert not bad, bad\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("source", "banned"),
    [
        ("from PySide6 import QtCore\n\nprint(QtCore)\n", "PySide6"),
        ("from ui.application import run\n\nprint(run)\n", "ui"),
    ],
)
def test_lint_bans_qt_and_the_gui_in_core(source: str, banned: str) -> None:
    config = (ROOT / "pyproject.toml").read_text()
    assert f'"{banned}".msg' in config
    # Checked as if it were a file in app/, without writing one there.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--select",
            "TID251",
            "--stdin-filename",
            "app/_layering_probe.py",
            "-",
        ],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode != 0
    assert "TID251" in result.stdout


def test_the_window_opens_through_the_launcher_outside_the_core(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.cli import main

    assert main([], open_window=lambda: 7) == 7
    assert main(["gui"], open_window=lambda: 8) == 8
    assert main([]) == 2  # the core alone cannot open it, and says what can
    assert "run `hearth`" in capsys.readouterr().out
    config = (ROOT / "pyproject.toml").read_text()
    assert 'hearth = "ui.launcher:main"' in config


def test_window_start_leaves_heavy_libraries_for_later() -> None:
    """What the main window imports must not pull in what only later work needs: llama.cpp,
    gguf and numpy (reading tensors, ~0.4 s), the Markdown and highlighting libraries (the first
    reply shown), the HTTP stack (the first download or Hub search)."""
    code = (
        "import sys\n"
        "import app.context, ui.application, ui.main_window\n"
        "heavy = ('llama_cpp', 'gguf', 'numpy', 'markdown_it', 'pygments', 'urllib.request',\n"
        "         'http.client', 'huggingface_hub')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

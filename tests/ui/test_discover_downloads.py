"""Discover, the model page, the Downloads page and the Hub settings, against the fake Hub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import keyring.backends.fail
import pytest
from pytestqt.qtbot import QtBot

from app.downloads import State
from tests.fake_engine import FakeEngine
from tests.fake_hub import FakeHub
from ui.download_list import DownloadRole
from ui.downloads_page import DownloadsPage
from ui.main_window import MainWindow

REPO = "acme/Tiny-GGUF"
BIG = 3_000_000


@pytest.fixture
def hub(fake_hub: FakeHub, tiny_model: Path) -> Iterator[FakeHub]:
    data = tiny_model.read_bytes()
    fake_hub.add(
        REPO,
        {"tiny-Q4_K_M.gguf": data, "tiny-Q8_0.gguf": data + b"\0" * 64},
        card="# Tiny\n\nA **tiny** test model.\n\n![diagram](https://example.com/d.png)\n",
    )
    fake_hub.add("acme/Big-GGUF", {"big-Q4_K_M.gguf": b"G" * BIG}, downloads=5)
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())  # like a headless Linux session
    yield fake_hub
    keyring.set_keyring(previous)


def search(qtbot: QtBot, window: MainWindow, text: str) -> None:
    page = window.discover_page
    window.show_page(window.DISCOVER)
    page.query.setText(text)
    page.search()
    qtbot.waitUntil(lambda: "shown" in page.status.text() or "No GGUF" in page.status.text())


def open_repo(qtbot: QtBot, window: MainWindow, repo_id: str) -> None:
    page = window.discover_page
    search(qtbot, window, repo_id.split("/")[1])
    page.list.setCurrentIndex(page.rows.index(page.rows.row_of(repo_id), 0))
    qtbot.waitUntil(lambda: page.panel.data is not None, timeout=10_000)


def status(page: DownloadsPage, row: int = 0) -> str:
    """The status line the Downloads page paints under a row's progress bar."""
    return str(page.model.index(row).data(DownloadRole.Status))


def file_buttons(window: MainWindow) -> list:  # type: ignore[type-arg]
    files = window.discover_page.panel.files
    return [files.cellWidget(r, 3) for r in range(files.rowCount())]


def test_recommended_list_needs_no_network(
    hub: FakeHub, make_window: Callable[..., MainWindow]
) -> None:
    hub.requests.clear()
    window = make_window()
    window.show_page(window.DISCOVER)
    page = window.discover_page
    assert page.rows.rowCount() >= 5
    assert "Recommended" in page.heading.text()
    assert hub.requests == []  # nothing is fetched until the user asks


def test_search_drops_stale_answers_and_pages(
    qtbot: QtBot, hub: FakeHub, make_window: Callable[..., MainWindow]
) -> None:
    for i in range(35):
        hub.add(f"bulk/model-{i:02d}-GGUF", {"m-Q4_0.gguf": b"x"}, downloads=1000 - i)
    hub.search_delays["acme"] = 1.0
    window = make_window()
    page = window.discover_page
    page.query.setText("acme")
    page.search()  # slow answer, soon stale
    search(qtbot, window, "bulk")
    assert page.rows.rowCount() == 30
    qtbot.wait(1300)  # the stale "acme" answer arrives now and must be dropped
    assert page.rows.rowCount() == 30
    assert page.rows.index(0, 0).data() == "bulk/model-00-GGUF"
    assert page.more.isVisible()
    page.more.click()
    qtbot.waitUntil(lambda: page.rows.rowCount() == 35)
    assert not page.more.isVisible()
    page.size_filter.setCurrentIndex(page.size_filter.findData("huge"))  # nothing that large here
    qtbot.waitUntil(lambda: "No GGUF models match" in page.status.text())


def test_model_page_download_and_chat(
    qtbot: QtBot, hub: FakeHub, make_window: Callable[..., MainWindow], fake_engine: FakeEngine
) -> None:
    window = make_window()
    window.show_page(window.DISCOVER)
    open_repo(qtbot, window, REPO)
    panel = window.discover_page.panel
    assert panel.files.rowCount() == 2
    assert "Recommended" in panel.files.item(0, 0).text()  # Q4_K_M
    badge = panel.files.cellWidget(0, 2)
    assert badge.text() == "fits"
    assert "KV cache" in badge.toolTip()
    assert "layers" in badge.toolTip()
    qtbot.waitUntil(lambda: "tiny" in panel.card.toPlainText())
    assert "[image: diagram]" in panel.card.toPlainText()  # a link, not a fetched image

    file_buttons(window)[0].click()
    qtbot.waitUntil(
        lambda: [j.state for j in window.downloads.jobs()] == [State.DONE], timeout=10_000
    )
    dest = Path(window.downloads.jobs()[0].paths[0])
    assert dest.parts[-3:] == ("acme", "Tiny-GGUF", "tiny-Q4_K_M.gguf")
    # The model shows up in the library and the chat picker without a restart.
    qtbot.waitUntil(lambda: window.chat_page.picker.findData(str(dest)) >= 0, timeout=5000)
    qtbot.waitUntil(lambda: file_buttons(window)[0].text() == "Downloaded")
    page = window.downloads_page
    window.show_page(window.DOWNLOADS)
    assert page.current_job() == window.downloads.jobs()[0]  # the new download is selected
    assert page.chat_button.isVisible()
    page.chat_button.click()
    qtbot.waitUntil(lambda: fake_engine.loads[-1:] == [str(dest)], timeout=5000)
    assert window.pages.currentWidget() is window.chat_page


def test_pause_resume_cancel_from_the_downloads_page(
    qtbot: QtBot, hub: FakeHub, make_window: Callable[..., MainWindow]
) -> None:
    hub.throttle = BIG / 3
    window = make_window()
    open_repo(qtbot, window, "acme/Big-GGUF")
    file_buttons(window)[0].click()
    window.show_page(window.DOWNLOADS)
    page = window.downloads_page
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=5000)
    job = page.current_job  # the one row, selected: the buttons under the list act on it
    qtbot.waitUntil(lambda: job().done > BIG // 10 and "/s" in status(page), timeout=5000)
    assert "left" in status(page)
    assert window.nav.button(window.DOWNLOADS).text() == "Downloads (1)"
    assert page.pause_button.isVisible()
    assert page.cancel_button.isVisible()
    page.pause_button.click()
    qtbot.waitUntil(lambda: job().state is State.PAUSED, timeout=5000)
    assert page.pause_button.text() == "Resume"
    assert status(page).startswith("Paused")
    assert page.summary.text() == "1 paused"
    hub.throttle = 0
    page.pause_button.click()
    qtbot.waitUntil(lambda: job().state is State.DONE, timeout=10_000)
    assert not page.cancel_button.isVisible()
    assert not page.pause_button.isVisible()
    path = Path(job().paths[0])
    page.remove_button.click()  # forget the row; the model stays
    qtbot.waitUntil(lambda: page.model.rowCount() == 0)
    assert path.exists()
    assert page.empty.isVisible()
    assert not page.list.isVisible()

    # cancel deletes the partial bytes
    hub.throttle = BIG / 3
    path.unlink()
    file_buttons(window)[0].click()
    qtbot.waitUntil(lambda: page.model.rowCount() == 1 and job().done > 0)
    page.cancel_button.click()
    qtbot.waitUntil(lambda: page.model.rowCount() == 0, timeout=5000)
    assert not list(window.ctx.paths.partial_dir.rglob("*.part"))


def test_closing_and_reopening_resumes_the_download(
    qtbot: QtBot, hub: FakeHub, make_window: Callable[..., MainWindow]
) -> None:
    hub.throttle = BIG / 3
    first = make_window()
    open_repo(qtbot, first, "acme/Big-GGUF")
    file_buttons(first)[0].click()
    qtbot.waitUntil(lambda: first.downloads.jobs()[0].done > BIG // 5, timeout=5000)
    first.close()
    kept = first.downloads.manager.jobs()[0].done
    hub.throttle = 0
    hub.requests.clear()
    second = make_window()
    qtbot.waitUntil(
        lambda: [j.state for j in second.downloads.jobs()] == [State.DONE], timeout=10_000
    )
    ranges = [r for _m, p, r in hub.requests if p.startswith("/cdn/")]
    assert len(ranges) == 1
    assert int(ranges[0][6:-1]) >= kept  # nothing already on disk was fetched again


def test_gated_model_explains_and_a_token_fixes_it(
    qtbot: QtBot, hub: FakeHub, make_window: Callable[..., MainWindow]
) -> None:
    hub.repos[REPO].gated = True
    window = make_window()
    open_repo(qtbot, window, REPO)
    panel = window.discover_page.panel
    assert panel.gated.isVisible()
    assert "accept" in panel.gated.text()
    file_buttons(window)[0].click()
    qtbot.waitUntil(lambda: window.downloads.jobs()[0].state is State.FAILED, timeout=5000)
    assert "token" in window.downloads.jobs()[0].error

    settings = window.settings_page
    settings.token.setText("hf_wrong")
    settings.save_token.click()
    qtbot.waitUntil(lambda: "refused" in settings.token_status.text(), timeout=5000)
    settings.token.setText(hub.token)
    settings.save_token.click()
    qtbot.waitUntil(lambda: "Signed in as tester" in settings.token_status.text(), timeout=5000)
    assert "until Hearth quits" in settings.token_status.text()  # no keyring here
    assert settings.token.text() == ""

    window.show_page(window.DOWNLOADS)
    page = window.downloads_page
    assert page.model.rowCount() == 1
    assert page.pause_button.text() == "Retry"
    assert f"{hub.url}/{REPO}" in status(page)
    # the page to accept the terms: a link in the row, and a button for the keyboard
    assert page.list.currentIndex().data(DownloadRole.Link) == f"{hub.url}/{REPO}"
    assert page.link_button.isVisible()
    assert page.link_button.toolTip() == f"{hub.url}/{REPO}"
    page.pause_button.click()
    qtbot.waitUntil(lambda: window.downloads.jobs()[0].state is State.DONE, timeout=10_000)
    settings.remove_token.click()


def test_offline_mode_opens_no_connection(
    qtbot: QtBot, hub: FakeHub, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window()
    window.settings_page.offline.setChecked(True)
    assert window.ctx.settings.offline
    hub.requests.clear()
    page = window.discover_page
    page.query.setText("tiny")
    page.search()
    qtbot.waitUntil(lambda: "offline" in page.status.text())
    page.open_model(REPO)
    qtbot.waitUntil(lambda: "offline" in page.panel.message.text())
    assert hub.requests == []
    window.settings_page.offline.setChecked(False)
    search(qtbot, window, "tiny")
    assert page.rows.rowCount() == 1


def test_theme_change_recolours_the_model_card(
    qtbot: QtBot, hub: FakeHub, make_window: Callable[..., MainWindow]
) -> None:
    hub.repos[REPO].card = "# Tiny\n\n```python\nprint('hi')\n```\n"
    window = make_window()
    window._apply_theme("light")
    open_repo(qtbot, window, REPO)
    panel = window.discover_page.panel
    qtbot.waitUntil(lambda: "print" in panel.card.toPlainText())
    assert not panel.renderer.dark
    window._apply_theme("dark")
    qtbot.waitUntil(lambda: panel.renderer.dark)
    assert window.chat_page.view._renderer.dark  # the chat view follows too
    assert "print" in panel.card.toPlainText()
    window._apply_theme("light")

"""The Downloads list as model/view (model, delegate, page), and the Hub results model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from PySide6.QtCore import QModelIndex, QPoint, QRect, Qt
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QApplication, QMenu, QStyleOptionViewItem
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from app.downloads import JobView, State
from app.hub import SearchResult
from app.hub.recommended import recommended
from ui.download_list import DownloadDelegate, DownloadListModel, DownloadRole, status_text
from ui.downloads_page import DownloadsPage
from ui.item_models import HubListModel, HubRole, recommended_row, search_row
from ui.main_window import MainWindow

MB = 1_000_000
GATED = (
    "acme/Gated-GGUF is gated: accept its terms at https://hub.example/acme/Gated-GGUF "
    "and add a Hugging Face token in Settings, then press Retry to try again."
)


def job(name: str, state: State = State.ACTIVE, done: int = 0, **changes: object) -> JobView:
    view = JobView(
        f"acme/{name}-GGUF/{name}-Q4_K_M",
        f"acme/{name}-GGUF",
        f"{name}-Q4_K_M",
        "Q4_K_M",
        state,
        done,
        6_000 * MB,  # beyond 32 bits: byte counts must survive the trip through Qt
        0.0,
        "",
        (f"/models/acme/{name}-GGUF/{name}-Q4_K_M.gguf",) if state is State.DONE else (),
    )
    return dataclasses.replace(view, **changes)  # type: ignore[arg-type]


class Recorder:
    """Every change signal of a model, in order."""

    def __init__(self, model: DownloadListModel) -> None:
        self.events: list[tuple[object, ...]] = []
        model.modelReset.connect(self.reset)
        model.rowsInserted.connect(self.inserted)
        model.rowsRemoved.connect(self.removed)
        model.rowsMoved.connect(self.moved)
        model.dataChanged.connect(self.changed)

    def reset(self) -> None:
        self.events.append(("reset",))

    def inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        self.events.append(("inserted", first, last))

    def removed(self, _parent: QModelIndex, first: int, last: int) -> None:
        self.events.append(("removed", first, last))

    def moved(self, _p: QModelIndex, start: int, _end: int, _d: QModelIndex, dest: int) -> None:
        self.events.append(("moved", start, dest))

    def changed(self, top: QModelIndex, bottom: QModelIndex, roles: list[int]) -> None:
        self.events.append(("changed", top.row(), bottom.row(), set(roles)))

    def take(self) -> list[tuple[object, ...]]:
        events, self.events = self.events, []
        return events


def test_download_model_updates_rows_in_place(qtmodeltester: ModelTester) -> None:
    model = DownloadListModel()
    a, b, c = job("a", State.DONE, 6_000 * MB), job("b", State.PAUSED, 10 * MB), job("c")
    model.set_jobs([b])
    # Once: the tester stays connected and checks the whole model again at every change below.
    qtmodeltester.check(model, force_py=True)
    seen = Recorder(model)
    assert model.set_jobs([a, b, c]) == [c.id, a.id]
    assert [model.index(r).data(DownloadRole.Id) for r in range(3)] == [c.id, b.id, a.id]
    assert model.index(0).data() == "acme/c-GGUF Q4_K_M · 6.0 GB"
    assert model.index(2).data(DownloadRole.Done) == 6_000 * MB
    assert model.index(2).data(DownloadRole.Progress) == 1000
    assert model.index(2).data(DownloadRole.Paths) == list(a.paths)
    assert model.index(1).data(DownloadRole.Status) == "Paused · 10.0 MB of 6.0 GB"
    assert "acme/b-GGUF" in model.index(1).data(Qt.ItemDataRole.AccessibleTextRole)
    names = {bytes(n.data()) for n in model.roleNames().values()}
    assert {b"status", b"progress", b"repoId", b"state"} <= names
    assert ("reset",) not in seen.take()

    # A poll with progress changes the one row, naming only what changed.
    c2 = dataclasses.replace(c, done=600 * MB, speed=20 * MB)
    assert model.set_jobs([a, b, c2]) == []
    progress = {  # not the title (DisplayRole), the name or the state: they did not change
        DownloadRole.Done,
        DownloadRole.Speed,
        DownloadRole.Eta,
        DownloadRole.Progress,
        DownloadRole.Status,
        DownloadRole.Job,
        Qt.ItemDataRole.ToolTipRole,
        Qt.ItemDataRole.AccessibleTextRole,
    }
    assert seen.take() == [("changed", 0, 0, progress)]
    assert model.index(0).data(DownloadRole.Eta) == pytest.approx(270.0)
    assert model.set_jobs([a, b, c2]) == []  # nothing new: nothing emitted
    assert seen.take() == []

    # A state change names the state; a new download goes on top; a gone one leaves.
    b2 = dataclasses.replace(b, state=State.FAILED, error=GATED)
    d = job("d", State.QUEUED)
    assert model.set_jobs([b2, c2, d]) == [d.id]
    events = seen.take()
    assert events[0] == ("removed", 2, 2)  # a, at the bottom
    changed = next(e for e in events if e[0] == "changed")
    assert changed[:3] == ("changed", 2, 2)  # b, below the new d and c
    assert {DownloadRole.State, DownloadRole.Status, DownloadRole.Link} <= changed[3]  # type: ignore[operator]
    assert DownloadRole.Done not in changed[3]  # type: ignore[operator]
    assert ("inserted", 0, 0) in events
    assert ("reset",) not in events
    assert model.index(2).data(DownloadRole.Link) == "https://hub.example/acme/Gated-GGUF"
    assert model.index(2).data(DownloadRole.State) == State.FAILED.value

    # Order changes are moves, not resets (the manager keeps its order; the model must not rely
    # on it).
    assert model.set_jobs([d, c2, b2]) == []
    assert [model.index(r).data(DownloadRole.Id) for r in range(3)] == [b2.id, c2.id, d.id]
    assert all(e[0] == "moved" for e in seen.take())
    model.set_jobs([])
    assert seen.take() == [("removed", 0, 2)]


def test_hub_results_model(qtmodeltester: ModelTester) -> None:
    model = HubListModel()
    model.set_rows([recommended_row(r) for r in recommended()])
    qtmodeltester.check(model, force_py=True)  # and again at every change below
    results = [
        SearchResult(f"acme/m{i}-GGUF", 1500 * i, i, "2025-01-02T00:00:00Z", i == 2, 7_000_000_000)
        for i in range(4)
    ]
    model.set_rows([search_row(r) for r in results[:2]])
    model.append_rows([search_row(r) for r in results[1:]])  # m1 is known already
    assert model.rowCount() == 4
    assert model.index(2).data(HubRole.RepoId) == "acme/m2-GGUF"
    assert "gated" in model.index(2).data(HubRole.Subtitle)
    assert model.row_of("acme/m3-GGUF") == 3


@pytest.fixture
def page(qtbot: QtBot) -> DownloadsPage:
    page = DownloadsPage(2)
    qtbot.addWidget(page)
    page.resize(900, 700)
    page.show()
    return page


ALL = [
    job("done", State.DONE, 6_000 * MB),
    job("gated", State.FAILED, error=GATED),
    job("paused", State.PAUSED, 100 * MB),
    job("queued", State.QUEUED),
    job("active", State.ACTIVE, 300 * MB, speed=5 * MB),
]


def shown(page: DownloadsPage) -> list[str]:
    return [b.text() for b in page.buttons if b.isVisible()]


def test_buttons_act_on_the_selected_download(qtbot: QtBot, page: DownloadsPage) -> None:
    page.set_jobs(ALL)
    assert page.current_job() == ALL[-1]  # the newest, on top
    assert shown(page) == ["Pause", "Cancel"]
    assert page.pause_button.accessibleName() == "Pause acme/active-GGUF Q4_K_M"
    with qtbot.waitSignal(page.pause_requested) as sig:
        page.pause_button.click()
    assert sig.args == [ALL[-1].id]
    page.select(ALL[2].id)
    assert shown(page) == ["Resume", "Cancel"]
    with qtbot.waitSignal(page.resume_requested) as sig:
        page.pause_button.click()
    assert sig.args == [ALL[2].id]
    page.select(ALL[1].id)
    assert shown(page) == ["Retry", "Cancel", "Open page"]
    page.select(ALL[0].id)
    assert shown(page) == ["Chat", "Show in folder", "Remove from list"]
    with qtbot.waitSignal(page.chat_requested) as sig:
        page.chat_button.click()
    assert sig.args == [ALL[0].paths[0]]
    with qtbot.waitSignal(page.remove_requested) as sig:
        page.remove_button.click()
    assert sig.args == [ALL[0].id]

    # Polls keep the selection on the same download, wherever its row moves.
    page.set_jobs([*ALL[:4], dataclasses.replace(ALL[4], done=400 * MB)])
    assert page.current_job() == ALL[0]
    page.set_jobs([*ALL, job("newer", State.QUEUED)])  # a new download is selected
    assert page.current_job().id.startswith("acme/newer")  # type: ignore[union-attr]
    page.select(ALL[2].id)
    page.set_jobs(ALL[:2] + ALL[3:])  # the selected one went away: a neighbour is selected
    assert page.current_job() in ALL
    assert page.list.selectionModel().isSelected(page.list.currentIndex())
    assert page.summary.text() == "1 downloading at 5.0 MB/s · 1 waiting · 1 failed · 1 finished"


def test_every_action_works_from_the_keyboard(
    qtbot: QtBot, page: DownloadsPage, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()))
    page.activateWindow()
    qtbot.waitUntil(page.isActiveWindow)
    page.set_jobs(ALL)
    page.list.setFocus()
    qtbot.keyClick(page.list, Qt.Key.Key_End)
    assert page.current_job() == ALL[0]
    with qtbot.waitSignal(page.chat_requested):  # Enter on a finished download: chat with it
        qtbot.keyClick(page.list, Qt.Key.Key_Return)
    qtbot.keyClick(page.list, Qt.Key.Key_Up)
    assert page.current_job() == ALL[1]
    with qtbot.waitSignal(page.resume_requested) as sig:  # Enter on a failed one: retry
        qtbot.keyClick(page.list, Qt.Key.Key_Return)
    assert sig.args == [ALL[1].id]
    with qtbot.waitSignal(page.cancel_requested):
        qtbot.keyClick(page.list, Qt.Key.Key_Delete)

    # Tab walks from the list through the buttons of the selected row; Enter presses one.
    qtbot.keyClick(page.list, Qt.Key.Key_Tab)
    assert page.focusWidget() is page.pause_button
    qtbot.keyClick(page.pause_button, Qt.Key.Key_Tab)
    assert page.focusWidget() is page.cancel_button
    qtbot.keyClick(page.cancel_button, Qt.Key.Key_Tab)
    assert page.focusWidget() is page.link_button
    qtbot.keyClick(page.link_button, Qt.Key.Key_Return)
    assert opened == ["https://hub.example/acme/Gated-GGUF"]
    page.list.setFocus()
    qtbot.keyClick(page.list, Qt.Key.Key_End)
    qtbot.keyClick(page.list, Qt.Key.Key_Tab)
    assert page.focusWidget() is page.chat_button
    with qtbot.waitSignal(page.remove_requested):
        for _ in range(2):
            qtbot.keyClick(page.focusWidget(), Qt.Key.Key_Tab)
        assert page.focusWidget() is page.remove_button
        qtbot.keyClick(page.remove_button, Qt.Key.Key_Return)


def test_a_link_in_a_row_opens_on_click(
    qtbot: QtBot, page: DownloadsPage, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()))
    page.set_jobs([ALL[1]])
    delegate = page.list.itemDelegate()
    assert isinstance(delegate, DownloadDelegate)
    index = page.model.index(0)
    rect = page.list.visualRect(index)
    option = QStyleOptionViewItem()
    page.list.initViewItemOption(option)
    option.rect = rect  # type: ignore[attr-defined]
    spot = next(
        QPoint(x, y)
        for y in range(rect.top(), rect.bottom(), 3)
        for x in range(rect.left(), rect.right(), 6)
        if delegate.link_at(option, index, QPoint(x, y))
    )
    qtbot.mouseClick(page.list.viewport(), Qt.MouseButton.LeftButton, pos=spot)
    assert opened == ["https://hub.example/acme/Gated-GGUF"]


def test_rows_grow_and_shrink_with_their_content(qtbot: QtBot, page: DownloadsPage) -> None:
    page.resize(500, 700)
    active = job("x", State.ACTIVE, 10 * MB)
    page.set_jobs([active])

    def height() -> int:
        return page.list.visualRect(page.model.index(0)).height()

    short = dataclasses.replace(active, state=State.FAILED, error="See https://hub.example/x")
    page.set_jobs([short])
    qtbot.wait(50)
    one_line = height()
    assert one_line < 100
    # Only the row's text changes (same buttons, same summary): the row must still grow.
    page.set_jobs([dataclasses.replace(short, error=GATED * 2)])
    qtbot.waitUntil(lambda: height() > one_line + 20)  # the whole error shows, wrapped
    failed = height()
    page.set_jobs([dataclasses.replace(active, state=State.DONE, done=active.total)])
    qtbot.waitUntil(lambda: height() < failed)  # no bar, one line
    # The list is as tall as its cards, and the buttons sit under it.
    page.set_jobs([job(f"d{i}", State.DONE, 6_000 * MB) for i in range(4)])
    qtbot.wait(50)
    assert not page.list.verticalScrollBar().isVisible()
    assert page.chat_button.y() < page.list_area.height() // 2

    # In a full list (it scrolls, so it cannot grow) a row still grows with its text.
    many = [job(f"m{i}", State.FAILED, error="See https://hub.example/x") for i in range(12)]
    page.set_jobs(many)
    qtbot.waitUntil(lambda: page.list.verticalScrollBar().isVisible())
    qtbot.wait(50)
    assert height() == one_line
    page.set_jobs([*many[:-1], dataclasses.replace(many[-1], error=GATED * 2)])
    qtbot.waitUntil(lambda: height() == failed)


@pytest.fixture
def chrome(make_window: Callable[..., MainWindow]) -> int:
    """How much of the window's width is not the Downloads page (the sidebar, margins)."""
    window = make_window()
    window.show_page(window.DOWNLOADS)
    return window.width() - window.downloads_page.width()


def test_every_action_fits_a_700_px_window(qtbot: QtBot, page: DownloadsPage, chrome: int) -> None:
    width = 700 - chrome
    assert page.minimumSizeHint().width() <= width
    page.resize(width, 600)
    long_name = job("Meta-Llama-3.1-70B-Instruct-abliterated-imatrix", State.DONE, 6_000 * MB)
    page.set_jobs([*ALL, long_name])
    for j in [*ALL, long_name]:
        page.select(j.id)
        qtbot.waitUntil(lambda: page.width() == width)
        buttons = [b for b in page.buttons if b.isVisible()]
        assert len(buttons) >= 2, status_text(j)
        for b in buttons:
            assert page.rect().contains(QRect(b.mapTo(page, QPoint(0, 0)), b.size())), b.text()
        row = page.list.visualRect(page.list.currentIndex())
        assert page.list.viewport().rect().contains(row)


# The offscreen platform cannot raise a popup or grab the keyboard for it.
@pytest.mark.qt_log_ignore("This plugin does not support (raise|grabbing the keyboard)")
def test_right_click_offers_the_same_actions(qtbot: QtBot, page: DownloadsPage) -> None:
    def offered(pos: QPoint) -> QMenu:
        page.list.customContextMenuRequested.emit(pos)
        menu = QApplication.activePopupWidget()
        assert isinstance(menu, QMenu)
        return menu

    page.set_jobs(ALL)
    done = page.list.visualRect(page.model.index(page.model.row_of(ALL[0].id))).center()
    menu = offered(done)
    assert [a.text() for a in menu.actions()] == ["Chat", "Show in folder", "Remove from list"]
    menu.close()
    failed = page.list.visualRect(page.model.index(page.model.row_of(ALL[1].id))).center()
    menu = offered(failed)
    assert page.current_job() == ALL[1]  # the row right-clicked is the one acted on
    assert [a.text() for a in menu.actions()] == ["Retry", "Cancel", "Open page"]
    with qtbot.waitSignal(page.resume_requested) as sig:
        menu.actions()[0].trigger()
    assert sig.args == [ALL[1].id]
    menu.close()

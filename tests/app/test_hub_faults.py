"""The Hub misbehaving, request by request: every fault is a plain HubError within seconds (no
traceback, no hang), a slow but whole answer still works, and the next request is unaffected."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.hub import HubError, list_models, model_details, search_page
from app.hub import api as hub_api
from tests.fake_hub import FakeHub

REPO = "acme/Tiny-GGUF"
FAULTS = {
    "401": "valid access token",
    "403": "refused access",
    "404": "not found on the Hub",
    "429": "rate-limiting",
    "500": "having trouble",
    "503": "having trouble",
    "malformed": "cannot read|failed",
    "truncated": "cannot be reached|failed|cannot read",
    "reset": "cannot be reached|failed",
    "stall": "cannot be reached|failed",
}
CALLS = {
    "search": lambda: search_page("tiny"),
    "model page": lambda: model_details(REPO),
    "files": lambda: list_models(REPO),
}


@pytest.fixture
def hub(fake_hub: FakeHub, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake_hub.add(REPO, {"tiny-Q4_K_M.gguf": tiny_model.read_bytes(), "README.md": b"# Tiny"})
    monkeypatch.setattr(hub_api, "TIMEOUT", 1.0)  # a stalled answer is given up on sooner
    return fake_hub


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_hub_fault_is_a_plain_message(hub: FakeHub, fault: str, call: str) -> None:
    hub.api_faults = [fault]
    started = time.monotonic()
    with pytest.raises(HubError, match=FAULTS[fault]) as failed:
        CALLS[call]()
    assert time.monotonic() - started < 4
    message = str(failed.value)
    assert "Traceback" not in message
    assert len(message) < 300
    assert "\n" not in message
    hub.api_faults = []
    assert CALLS[call]()  # the next request works


def test_a_slow_drip_of_a_whole_answer_still_works(hub: FakeHub) -> None:
    hub.api_faults = ["drip"]
    assert [r.repo_id for r in search_page("tiny").results] == [REPO]

"""The engine thread's worker: token deltas are coalesced once between engine and screen."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from app.engine.types import GenerationStats, LoadedModel, Reply
from app.settings import Sampling
from ui.engine_controller import EngineWorker


class _Burst:
    """An engine whose reply is 200 pieces at once, said to be paced or not."""

    def __init__(self, paced: bool) -> None:
        self.paced = paced
        self.loaded = LoadedModel("m.gguf", "m", 512, "model", "model's own", 0)

    def chat(self, _messages: object, _sampling: object, _cancel: object, _rules: object) -> Reply:
        def pieces() -> Iterator[str]:
            yield from (f"w{i} " for i in range(200))

        return Reply(pieces(), GenerationStats(), paced=self.paced)

    def load(self, *_args: object) -> LoadedModel:
        return self.loaded

    def unload(self) -> None: ...
    def prepare(self, _messages: object) -> None: ...
    def interrupt(self) -> None: ...
    def close(self) -> None: ...


def _deltas(paced: bool) -> list[str]:
    worker = EngineWorker(lambda: _Burst(paced))  # type: ignore[arg-type, return-value]
    got: list[str] = []
    worker.delta.connect(lambda _rid, text: got.append(text))  # direct: same thread
    worker.generate(1, [{"role": "user", "content": "hi"}], Sampling(), threading.Event())
    return got


def test_a_paced_reply_is_not_coalesced_again_and_an_unpaced_one_is() -> None:
    paced = _deltas(paced=True)
    assert len(paced) == 200  # passed through as the engine process sent them
    unpaced = _deltas(paced=False)
    assert len(unpaced) < 10  # a burst becomes a few updates
    assert "".join(paced) == "".join(unpaced)

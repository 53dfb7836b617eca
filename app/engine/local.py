"""The engine every front end uses, and the check whether this machine's fast kernels work.

The window, ``hearth chat`` and the benchmarks get their engine here: llama.cpp in its own
process (app/engine/process.py), logging to the engine's log file, remembering safe CPU mode and
the model files that crashed it in Hearth's data folder.
"""

from __future__ import annotations

import threading

from app.engine.cpu_safety import SafeModeMemory
from app.engine.crashed_models import CrashedModels
from app.engine.process import ProcessEngine
from app.engine.types import ChatMessage, LoadParams
from app.paths import Paths
from app.settings import Sampling


def local_engine(paths: Paths) -> ProcessEngine:
    """The engine every front end uses: llama.cpp in its own process, logging to the engine's
    log file, remembering safe CPU mode in Hearth's data folder."""
    return ProcessEngine(
        log_file=str(paths.engine_log_file),
        safe_mode=SafeModeMemory(paths.safe_mode_file),
        crashed=CrashedModels(paths.crashed_models_file),
    )


def fast_kernels_work(model: str, memory: SafeModeMemory, threads: int = 2) -> bool:
    """Whether llama.cpp's fast CPU kernels run ``model`` on this machine: a short reply in an
    engine process, which falls back to safe CPU mode (and remembers it) if they fault."""
    if memory.needed():
        return False
    engine = ProcessEngine(safe_mode=memory)
    try:
        engine.load(model, LoadParams(context_length=512, threads=threads))
        hello: list[ChatMessage] = [{"role": "user", "content": "Hello, how are you?"}]
        list(engine.chat(hello, Sampling(max_tokens=2, temperature=0), threading.Event()))
    finally:
        engine.close()
    return not memory.needed()

"""Who is writing a streaming reply, and whether they still are.

A reply is saved while it streams (status ``streaming``). If its writer dies — the window killed,
`hearth chat` ended by SIGKILL or a power cut — the reply must show as ``interrupted`` to whoever
opens the chats next, while a reply that another live process is still writing must be left alone.
So every streaming reply names its writer: the host, the process id and the process's start time
(a reused process id has another start time). On the same host that is checked directly; a writer
on another host (a chat folder shared over the network) counts as gone once its reply has not
been saved for ``FOREIGN_LEASE`` seconds.
"""

from __future__ import annotations

import functools
import os
import socket

import psutil

FOREIGN_LEASE = 600.0


@functools.cache
def this_writer() -> str:
    """This process, as a streaming reply's writer."""
    return _identity(os.getpid())


def _identity(pid: int) -> str:
    started = psutil.Process(pid).create_time()
    return f"{socket.gethostname()}/{pid}/{started:.2f}"


def writer_alive(writer: str, saved_at: float, now: float) -> bool:
    """Whether the process named by ``writer`` (see ``this_writer``) may still be writing."""
    host, _, rest = writer.partition("/")
    pid_text, _, _started = rest.partition("/")
    if not host or not pid_text.isdigit():
        return False  # a reply from before writers were recorded: its writer is long gone
    if host != socket.gethostname():
        return now - saved_at < FOREIGN_LEASE
    pid = int(pid_text)
    try:
        return _identity(pid) == writer
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.Error:  # e.g. access denied: it exists, assume it writes
        return True

"""How many requests that may change moto's state it has answered: one count in shared memory, read by every process.

The gateway, the Lambda host and the runtime read the same few things on every request; the
count tells them (:mod:`l2c.local.read_cache`) whether what they read before may still be used.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import tempfile
import threading

# Operations that only read; anything else counts as a change (a wrong guess only costs a re-read).
READ_PREFIXES = ("Describe", "List", "Get", "Head", "Search", "Filter")
# Log writes happen on every invocation; nothing cached depends on them.
_UNCOUNTED_TARGETS = ("Logs_",)


class ChangeCount:
    """How many requests that may have changed moto's state it has answered.

    The count sits in a shared page (an unlinked file, mapped) rather than in this process's
    memory: the runtime's own process maps the same page from the descriptor it inherits
    (``ChangeCount(fd)``), so it sees a change the moment it is counted, with no round trip.
    """

    def __init__(self, fd: int | None = None):
        if fd is None:
            # /dev/shm keeps the page out of disk write-back; any directory would do.
            # Kept open for the counter's lifetime: the mapping below lives on its descriptor.
            self._file = tempfile.TemporaryFile(  # noqa: SIM115
                dir="/dev/shm" if os.path.isdir("/dev/shm") else None
            )
            self._file.truncate(8)
            fd = self._file.fileno()
        self._fd = fd
        self._map = mmap.mmap(fd, 8)
        self._cell = ctypes.c_uint64.from_buffer(self._map)
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        return self._cell.value

    def fileno(self) -> int:
        return self._fd

    def bump(self) -> None:
        # Only moto's process writes; the lock keeps its server threads from losing a count.
        with self._lock:
            self._cell.value += 1


changes = ChangeCount()


class CountChanges:
    """WSGI middleware around moto: counts each request that may change state, after it ran."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if _may_change(environ):
            try:
                return self.app(environ, start_response)
            finally:
                changes.bump()
        return self.app(environ, start_response)


def _may_change(environ) -> bool:
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD", "OPTIONS"):
        return False
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith(_UNCOUNTED_TARGETS):
        return False
    operation = target.rpartition(".")[2]
    return not (operation and operation.startswith(READ_PREFIXES))

"""Advisory file locks, shared by every package: one process at a time in a run folder, and a
short critical section around a shared file.

Both are ``flock`` locks, which the kernel drops when their process ends, however it ends: a
crash leaves nothing to clean up. Where ``fcntl`` is missing (Windows) or the file system
refuses ``flock``, nothing is locked.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

#: the lock file a process holds in its run folder while it trains there
FOLDER_LOCK = ".fqvae.lock"
_BUSY = (errno.EAGAIN, errno.EACCES)


class FolderInUse(OSError):
    """Another process holds the run folder's lock."""


def _flock(f: IO, mode: int) -> bool:
    """``flock(f, mode)``; False when another process holds a conflicting lock (``mode``
    non-blocking), True when locked or when the file system does not lock."""
    try:
        fcntl.flock(f, mode)
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        return True  # e.g. ENOLCK on a file system without flock: proceed unlocked
    return True


@contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing), waiting for it if need be."""
    with open(path, "a") as f:  # closing drops the lock
        if fcntl is not None:
            _flock(f, fcntl.LOCK_EX)
        yield


def _pid_in(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


class FolderLock:
    """The lock of one run folder, held by this process from :meth:`acquire` to
    :meth:`release` (or the end of a ``with`` block). The lock file holds the holder's pid."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._file: IO | None = None

    def acquire(self) -> None:
        """Create the folder if needed and take its lock; raises :class:`FolderInUse` naming
        the folder and the holder's pid when another process has it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / FOLDER_LOCK
        f = open(path, "a+", encoding="ascii")
        if fcntl is not None and not _flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB):
            f.close()
            pid = _pid_in(path)
            by = f"process {pid}" if pid else "another process"
            raise FolderInUse(
                f"{self.folder} is in use by {by} (fqvae train, or a study running this run); "
                "wait for it to end or stop it first"
            )
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None

    def __enter__(self) -> FolderLock:
        if self._file is None:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(folder: str | os.PathLike) -> int | None:
    """The pid of the process that holds ``folder``'s lock (0 when it cannot be read), or
    None when nobody does. Only reads: a folder without a lock file is not held."""
    path = Path(folder) / FOLDER_LOCK
    if fcntl is None or not path.is_file():
        return None
    try:
        f = open(path, encoding="ascii")
    except OSError:
        return None
    with f:
        if _flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB):
            fcntl.flock(f, fcntl.LOCK_UN)
            return None
    return _pid_in(path) or 0

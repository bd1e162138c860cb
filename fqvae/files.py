"""Safe file output, shared by every package: atomic writes, cleanup of the partial files of
killed writes, and up-front checks of output paths."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(target: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that :func:`atomic_path` left next to ``target`` in processes
    that died mid-write (killed, out of power); returns what was removed."""
    target = Path(target)
    removed = []
    for path in target.parent.glob(f".{target.stem}.partial-*{target.suffix}"):
        pid = path.name[len(f".{target.stem}.partial-") :].removesuffix(target.suffix)
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it onto ``target`` only on success.

    On any exception (including KeyboardInterrupt) the temporary file is removed, so an
    interrupted write never leaves a file at ``target``; the temporary files of earlier writes
    whose process was killed are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    tmp = target.with_name(f".{target.stem}.partial-{os.getpid()}{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def check_output_file(path: str | os.PathLike, flag: str, overwrite: bool = True) -> Path:
    """Check, before any work, that ``path`` can be written as a file; raises ``OSError``
    naming ``flag`` when it is a folder, its parent is a file or not writable, or (unless
    ``overwrite``) it exists."""
    path = Path(path)
    if path.is_dir():
        raise OSError(f"{flag} {path} is a folder; expected a file path")
    if path.exists() and not overwrite:
        raise OSError(f"{flag} {path} exists; pass --overwrite to replace it")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OSError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OSError(f"{flag} {path}: the folder {parent} is not writable")
    return path

"""Checkpoints: atomic writes, ``weights_only`` loads, RNG state capture, disk-space checks.

A checkpoint is a dict of tensors and primitive containers only (state dicts, RNG states as
uint8 tensors, the step, the resolved config), so ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from fqvae.files import atomic_path

CHECKPOINT = "checkpoint.pt"


def save(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync, then
    rename. An interrupted or failed write leaves any previous file untouched."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


KEYS = ("step", "model", "config", "model_kwargs")


class BadCheckpoint(ValueError):
    """A file that is not a readable fqvae checkpoint (empty, truncated, foreign, corrupt)."""


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save` with ``weights_only=True``; raises
    :class:`BadCheckpoint` naming the file when it is not one."""
    path = Path(path)
    if path.is_dir():
        raise BadCheckpoint(f"{path} is a folder; expected a checkpoint file ({CHECKPOINT})")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise BadCheckpoint(f"{path} is empty, not an fqvae checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # torch raises RuntimeError, UnpicklingError, EOFError, ... whose advice
        # (reload with weights_only=False) would be unsafe for a file from elsewhere
        raise BadCheckpoint(
            f"{path} is not a readable fqvae checkpoint (truncated, corrupt or another format)"
        ) from None
    missing = [k for k in KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise BadCheckpoint(f"{path} is not an fqvae checkpoint (missing {', '.join(missing)})")
    return state


def rng_state(device: torch.device) -> dict[str, Any]:
    """The generators a training step draws from (CPU, and the current CUDA device)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore :func:`rng_state`'s generators. Both take CPU byte tensors, wherever the
    checkpoint's ``map_location`` put them (a GPU run loads its checkpoint onto the GPU)."""
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def state_bytes(*modules_or_tensors: Any) -> int:
    """Bytes of the tensors of the given state dicts (an estimate of a checkpoint's size)."""
    total = 0
    stack = list(modules_or_tensors)
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total


def check_writable(out: str | os.PathLike, need_bytes: int = 0) -> Path:
    """Create ``out`` and prove it is writable with ``need_bytes`` free (times two, for the
    temporary file of an atomic write). Raises ``OSError`` with a message naming the folder."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(f"output folder {out} is not writable: {exc.strerror or exc}") from exc
    free = shutil.disk_usage(out).free
    if free < 2 * need_bytes:
        raise OSError(
            f"output folder {out} has {free / 2**20:.0f} MiB free; checkpoints need about "
            f"{2 * need_bytes / 2**20:.0f} MiB (two copies during an atomic write)"
        )
    return out

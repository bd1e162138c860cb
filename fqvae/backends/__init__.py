"""Backend registry and selection.

A backend is a module implementing the kernel contract below on *canonical* layouts: ``z`` is a
contiguous ``(M, D)`` tensor (the latent axis last), ``codebook`` a contiguous ``(C, K)`` tensor
with ``C == D`` (per-dim: element ``r`` uses codebook row ``r % D``) or ``C == 1`` (global:
every element uses row 0). Element ``r`` is the flat index into ``z``; ``N = M * D``.
Accumulation is float32 (float64 when ``z`` is float64). Seeds are Python ints.

``nearest_forward(z, codebook, index_dtype) -> (q, idx, sse)``
    ``q[r] = codebook[row, argmin_k (z[r] - c_k)^2]`` in ``z.dtype`` (NaN where ``z`` is
    non-finite; lowest index on ties, index 0 for non-finite ``z``; a finite ``z`` above the
    row's largest value takes its first index, below its smallest likewise, so no magnitude
    rounds the distances into ties); ``idx`` in ``index_dtype``;
    ``sse`` = 0-d accumulate-dtype sum of ``(z - q)^2`` over finite and non-finite elements alike.
``nearest_backward(grad_q | None, coef_z, coef_c, z, codebook, idx) -> (gz, gc)``
    ``gz = grad_q + coef_z * (z - q)``; ``gc[row, k] = coef_c * sum_{r: idx[r] = k} (q[r] - z[r])``.
    ``coef_z`` and ``coef_c`` are 0-d accumulate-dtype tensors on ``z``'s device.
``gumbel_forward(z, codebook, tau, seed, offset, hard, return_probs) -> (value, idx, kl, probs)``
    as :func:`fqvae.reference.quantize_gumbel`; ``idx`` int64, ``kl`` 0-d accumulate dtype (mean
    over the N elements), ``probs`` ``(M, D, K)`` in ``z.dtype`` or ``None``.
``gumbel_backward(grad_value | None, grad_kl | None, grad_probs | None, z, codebook, tau, seed,
offset) -> (gz, gc)``
    Gradients of ``<grad_value, soft value> + grad_kl * kl + <grad_probs, y>``; the noise is
    regenerated from ``(seed, offset)``. ``grad_kl`` is a 0-d tensor on ``z``'s device.
``permute_forward(x, seed, offset) -> (out, perm)``
    ``x`` is contiguous ``(B, L, F)``; ``perm = reference.permutations(B, L, seed, offset)``;
    ``out[b, l, :] = x[perm[b, l], l, :]``.
``permute_backward(grad, perm) -> gx`` with ``gx[perm[b, l], l, :] = grad[b, l, :]``.
``random_bits(rows, cols, seed, offset, device) -> (rows, cols) int64`` — the shared stream.
``available(device) -> str | None``: ``None`` when usable on that device type, else the reason.
``DTYPES``: the ``z`` dtypes the backend handles natively.

Selection: a backend pinned with :func:`backend` (innermost wins) or ``FQVAE_BACKEND``, else the
device default (``cpp`` on CPU, ``triton`` on CUDA). A backend that cannot run the call falls back
to ``reference`` with a one-time warning naming the reason.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

import torch

NAMES = ("reference", "cpp", "triton", "cuda")
DEFAULTS = {"cpu": "cpp", "cuda": "triton"}

_state = threading.local()
_warned: set[tuple[str, str]] = set()


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"fqvae.backends.{name}_backend")


def _pinned() -> str | None:
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    name = os.environ.get("FQVAE_BACKEND") or None
    if name is not None and name not in NAMES:
        raise ValueError(f"FQVAE_BACKEND={name!r} is not a backend; choose one of {NAMES}")
    return name


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Pin the backend used by fqvae ops inside the ``with`` block (thread-local)."""
    if name not in NAMES:
        raise ValueError(f"backend must be one of {NAMES}, got {name!r}")
    stack = _state.__dict__.setdefault("stack", [])
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


def unavailable_reason(name: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """Why backend ``name`` cannot run on ``device`` with ``z`` of ``dtype``; ``None`` if it can."""
    try:
        mod = _module(name)
    except ImportError as exc:
        return f"it failed to import ({exc})"
    reason = mod.available(device)
    if reason is None and dtype not in mod.DTYPES:
        reason = f"it does not support {dtype}"
    return reason


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Names of the backends that can run on ``device`` (in float32)."""
    device = torch.device(device)
    return [n for n in NAMES if unavailable_reason(n, device, torch.float32) is None]


@functools.cache
def _resolve(name: str, device: torch.device, dtype: torch.dtype) -> tuple[ModuleType, str | None]:
    """Backend ``name``'s module for this call, or the reference and the reason it cannot run.
    Cached: whether a backend can run depends only on the process and these arguments."""
    reason = None if name == "reference" else unavailable_reason(name, device, dtype)
    return _module("reference" if reason else name), reason


def select(device: torch.device, dtype: torch.dtype) -> ModuleType:
    """The backend module for a call on ``device`` with ``z`` of ``dtype``."""
    name = _pinned() or DEFAULTS.get(device.type, "reference")
    mod, reason = _resolve(name, device, dtype)
    if reason is None:
        return mod
    key = (name, reason)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(
            f"fqvae: backend {name!r} is unavailable on {device.type} ({reason}); "
            "falling back to the eager reference",
            RuntimeWarning,
            stacklevel=3,
        )
    return mod

"""Small helpers shared by the launchers."""

from __future__ import annotations

import contextlib

import torch


def next_pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (1 for ``n <= 1``)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def device_of(t: torch.Tensor) -> contextlib.AbstractContextManager:
    """Make ``t``'s CUDA device current for a launch (no-op for CPU tensors, interpreter)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def tile(m: int, d: int, k_pad: int, elems: int) -> tuple[int, int]:
    """``(BM, BD)`` for a ``[BM, BD, k_pad]`` tile of at most ``elems`` values over ``(m, d)``.

    ``BD`` covers up to 16 latents (all of them when ``d`` is small); ``BM`` fills the rest.
    """
    bd = min(next_pow2(d), 16, max(1, elems // k_pad))
    bm = min(max(1, elems // (bd * k_pad)), next_pow2(m))
    return bm, bd


def canonical(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``z`` as a contiguous ``(M, D)`` tensor whose column ``d`` uses codebook row ``d``.

    A global codebook (one row) flattens ``z`` to ``(N, 1)``, so every element uses row 0.
    """
    z = z.contiguous()
    if codebook.shape[0] == 1:
        z = z.reshape(-1, 1)
    return z, z.shape[0], z.shape[1]

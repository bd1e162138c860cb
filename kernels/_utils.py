"""Small helpers shared by the launchers."""

from __future__ import annotations

import contextlib
import os

import torch


def next_pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (1 for ``n <= 1``)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def device_of(t: torch.Tensor) -> contextlib.AbstractContextManager:
    """Make ``t``'s CUDA device current for a launch (no-op for CPU tensors, the interpreter, and
    a device that is already current)."""
    if t.is_cuda and t.device.index != torch.cuda.current_device():
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def tile(m: int, d: int, k_pad: int, per_thread: int) -> tuple[int, int, int]:
    """``(BM, BD, num_warps)`` for ``[k_pad, BM, BD]`` tiles holding ``per_thread`` codes a thread.

    Triton's default layout spreads threads over the trailing (element) axes first, so with at
    least one thread per element each thread keeps its elements' whole code axis in registers and
    reductions over codes need no shuffles. Codes beyond ``per_thread`` go to one warp whose lanes
    split the code axis (reductions stay inside the warp). The interpreter has no layouts and runs
    programs one after another, so there tiles are as large as for 256 codes a thread.
    """
    if os.environ.get("TRITON_INTERPRET") == "1":
        per_thread = max(per_thread, 256)
    if k_pad <= per_thread:
        warps, elems = 4, 128 * (per_thread // k_pad)
    else:
        warps, elems = 1, max(1, 32 * per_thread // k_pad)
    bd = min(next_pow2(d), elems)
    bm = min(elems // bd, next_pow2(m))
    return bm, bd, max(1, min(warps, bm * bd // 32))


def canonical(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``z`` as a contiguous ``(M, D)`` tensor whose column ``d`` uses codebook row ``d``.

    A global codebook (one row) flattens ``z`` to ``(N, 1)``, so every element uses row 0.
    """
    z = z.contiguous()
    if codebook.shape[0] == 1:
        z = z.reshape(-1, 1)
    return z, z.shape[0], z.shape[1]

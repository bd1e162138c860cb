"""Per-latent batch permutation (total-correlation sampling): forward and inverse scatter.

``x`` is a contiguous ``(B, L, F)`` tensor; column ``l`` is permuted by the stable ascending
argsort over ``b`` of the stream values ``random_u32(r=l, c=b)``. Up to ``MAX_SORT_BATCH`` rows the
forward is one launch: a program per column (times a split of the feature axis) draws the ``B``
keys, sorts the unique 64-bit keys ``(bits << log2(B_PAD)) | b`` with ``tl.sort`` (so equal bits
keep batch order) and gathers the rows. Larger batches draw the keys with the ``random_bits``
kernel and sort them with ``torch.argsort(stable=True)`` (same permutation), then gather.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._utils import device_of, next_pow2
from .philox import interleave4, random_bits, random_u32x4, seed_args

MAX_SORT_BATCH = 4096
SORT_TILE = 8192
GATHER_TILE = 4096
MAX_PROGRAMS = 256


@triton.jit(do_not_specialize=["seed_lo", "seed_hi", "offset"])
def _permute_sort_kernel(
    x_ptr,
    out_ptr,
    perm_ptr,
    B,
    L,
    F,
    seed_lo,
    seed_hi,
    offset,
    B_PAD: tl.constexpr,
    IDX_BITS: tl.constexpr,
    FB: tl.constexpr,
):
    """out ``(B, L, F)``, perm ``(B, L)`` int64 for column ``program_id(0)``; ``program_id(1)``
    takes every ``num_programs(1)``-th feature chunk of ``FB`` (program 0 also writes perm)."""
    col = tl.program_id(0)
    pid_f = tl.program_id(1)
    b = tl.arange(0, B_PAD)
    row = tl.zeros([B_PAD // 4], dtype=tl.int64) + col
    group = tl.arange(0, B_PAD // 4).to(tl.uint32)
    x0, x1, x2, x3 = random_u32x4(row, group, seed_lo, seed_hi, offset)
    bits = interleave4(x0, x1, x2, x3, [B_PAD])
    key = (bits.to(tl.int64) << IDX_BITS) | b
    key = tl.where(b < B, key, 0x7FFFFFFFFFFFFFFF)
    perm = tl.sort(key) & (B_PAD - 1)

    in_batch = b < B
    dst_row = b.to(tl.int64) * L + col
    if pid_f == 0:
        tl.store(perm_ptr + dst_row, perm, mask=in_batch)
    src_row = perm * L + col
    for chunk in range(pid_f, tl.cdiv(F, FB), tl.num_programs(1)):
        f = chunk * FB + tl.arange(0, FB)
        mask = in_batch[:, None] & (f < F)[None, :]
        vals = tl.load(x_ptr + src_row[:, None] * F + f[None, :], mask=mask)
        tl.store(out_ptr + dst_row[:, None] * F + f[None, :], vals, mask=mask)


@triton.jit
def _permute_gather_kernel(
    src_ptr,
    dst_ptr,
    perm_ptr,
    B,
    L,
    F,
    BB: tl.constexpr,
    FB: tl.constexpr,
    SCATTER: tl.constexpr,
):
    """For column ``program_id(0)`` and ``BB`` batch rows: ``dst[b] = src[perm[b]]``, or with
    ``SCATTER`` ``dst[perm[b]] = src[b]`` (``(B, L, F)`` tensors, ``perm`` ``(B, L)`` int64)."""
    col = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64) * BB + tl.arange(0, BB)
    in_batch = b < B
    perm = tl.load(perm_ptr + b * L + col, mask=in_batch, other=0)
    if SCATTER:
        src_row = b * L + col
        dst_row = perm * L + col
    else:
        src_row = perm * L + col
        dst_row = b * L + col
    for chunk in range(0, tl.cdiv(F, FB)):
        f = chunk * FB + tl.arange(0, FB)
        mask = in_batch[:, None] & (f < F)[None, :]
        vals = tl.load(src_ptr + src_row[:, None] * F + f[None, :], mask=mask)
        tl.store(dst_ptr + dst_row[:, None] * F + f[None, :], vals, mask=mask)


def _gather(src: torch.Tensor, perm: torch.Tensor, scatter: bool) -> torch.Tensor:
    batch, cols, feats = src.shape
    dst = torch.empty_like(src)
    fb = min(next_pow2(feats), 128)
    bb = max(1, min(next_pow2(batch), GATHER_TILE // fb))
    grid = (cols, triton.cdiv(batch, bb))
    with device_of(src):
        _permute_gather_kernel[grid](
            src, dst, perm, batch, cols, feats, BB=bb, FB=fb, SCATTER=scatter
        )
    return dst


def permute_forward(x: torch.Tensor, seed: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, perm)`` for a contiguous ``(B, L, F)`` ``x``; ``perm`` is ``(B, L)`` int64."""
    x = x.contiguous()
    batch, cols, feats = x.shape
    if batch > MAX_SORT_BATCH:
        bits = random_bits(cols, batch, seed, offset, x.device)
        perm = torch.argsort(bits, dim=1, stable=True).T.contiguous()
        return _gather(x, perm, scatter=False), perm
    out = torch.empty_like(x)
    perm = torch.empty((batch, cols), dtype=torch.int64, device=x.device)
    b_pad = max(next_pow2(batch), 4)
    fb = max(1, min(next_pow2(feats), SORT_TILE // b_pad))
    splits = min(triton.cdiv(feats, fb), max(1, MAX_PROGRAMS // cols))
    with device_of(x):
        _permute_sort_kernel[(cols, splits)](
            x,
            out,
            perm,
            batch,
            cols,
            feats,
            *seed_args(seed, offset),
            B_PAD=b_pad,
            IDX_BITS=b_pad.bit_length() - 1,
            FB=fb,
            num_warps=8 if b_pad >= 1024 else 4,
        )
    return out, perm


def permute_backward(grad: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``gx`` with ``gx[perm[b, l], l] = grad[b, l]`` (``(B, L, F)``; every row written once)."""
    return _gather(grad.contiguous(), perm.contiguous(), scatter=True)

"""Philox-4x32-10 in Triton with the counter layout of :mod:`fqvae.reference`, and the
``random_bits`` kernel that exposes the shared stream.

``random_u32(r, c)`` is lane ``c & 3`` of Philox with counter ``(c >> 2, r mod 2^32, r >> 32,
offset)`` and key ``(seed mod 2^32, seed >> 32)``. Seeds and offsets enter the kernels as int32
bit patterns (:func:`seed_args`), so one compiled kernel serves every seed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._utils import device_of, next_pow2

PHILOX_M0 = tl.constexpr(0xD2511F53)
PHILOX_M1 = tl.constexpr(0xCD9E8D57)
PHILOX_W0 = tl.constexpr(0x9E3779B9)
PHILOX_W1 = tl.constexpr(0xBB67AE85)


def _as_i32(value: int) -> int:
    """The uint32 ``value`` as the int32 with the same bits."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def seed_args(seed: int, offset: int) -> tuple[int, int, int]:
    """``(seed_lo, seed_hi, offset)`` as int32 bit patterns for the kernels' scalar arguments."""
    return _as_i32(seed), _as_i32(seed >> 32), _as_i32(offset)


@triton.jit
def philox_4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds on uint32 tensors (broadcastable shapes; the result has the full shape)."""
    for _ in tl.static_range(10):
        hi0 = tl.umulhi(c0, PHILOX_M0)
        lo0 = c0 * PHILOX_M0
        hi1 = tl.umulhi(c2, PHILOX_M1)
        lo1 = c2 * PHILOX_M1
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = k0 + PHILOX_W0
        k1 = k1 + PHILOX_W1
    return c0, c1, c2, c3


@triton.jit
def random_u32x4(r, group, seed_lo, seed_hi, offset):
    """Stream values ``(r, 4 * group + j)`` for ``j = 0..3`` as four uint32 tensors.

    ``r``: int64 row indices; ``group``: uint32 column groups (broadcastable against ``r``);
    ``seed_lo``, ``seed_hi``, ``offset``: int32 scalars holding uint32 bit patterns.
    """
    k0 = seed_lo.to(tl.uint32, bitcast=True)
    k1 = seed_hi.to(tl.uint32, bitcast=True)
    c1 = r.to(tl.uint32)
    c2 = (r >> 32).to(tl.uint32)
    c3 = offset.to(tl.uint32, bitcast=True)
    return philox_4x32_10(group, c1, c2, c3, k0, k1)


@triton.jit
def interleave4(x0, x1, x2, x3, SHAPE: tl.constexpr):
    """Lanes ``x0..x3`` (``[..., G]``) interleaved into ``SHAPE = [..., 4G]``, lane j at 4g + j."""
    return tl.reshape(tl.join(tl.join(x0, x2), tl.join(x1, x3)), SHAPE)


@triton.jit
def random_u32_block(r, seed_lo, seed_hi, offset, N_PAD: tl.constexpr):
    """``random_u32(r, c)`` for ``c = 0..N_PAD-1``: ``r`` is an int64 ``[A, B]`` tile, the result
    a uint32 ``[N_PAD, A, B]`` tile (``N_PAD`` a power of two >= 4), ``c`` on the leading axis.

    One Philox call per four values: the lanes of ``[N_PAD / 4, A, B]`` counters are joined on
    two trailing axes and moved next to the group axis, so value ``c = 4g + j`` is lane ``j`` of
    group ``g``.
    """
    A: tl.constexpr = r.shape[0]
    B: tl.constexpr = r.shape[1]
    group = tl.arange(0, N_PAD // 4).to(tl.uint32)
    x0, x1, x2, x3 = random_u32x4(r[None, :, :], group[:, None, None], seed_lo, seed_hi, offset)
    lanes = tl.join(tl.join(x0, x1), tl.join(x2, x3))
    return tl.reshape(tl.permute(lanes, 0, 4, 3, 1, 2), [N_PAD, A, B])


@triton.jit
def uniform_from_u32(bits):
    """uint32 -> float32 in (0, 1): ``(bits >> 9) * 2^-23 + 2^-24`` (exact)."""
    return (bits >> 9).to(tl.float32) * 1.1920928955078125e-07 + 5.9604644775390625e-08


@triton.jit(do_not_specialize=["seed_lo", "seed_hi", "offset"])
def _random_bits_kernel(
    out_ptr, rows, cols, seed_lo, seed_hi, offset, BR: tl.constexpr, BC: tl.constexpr
):
    """One ``[BR, BC]`` tile of the int64 ``(rows, cols)`` stream."""
    row = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    col = tl.program_id(1) * BC + tl.arange(0, BC)
    group = (tl.program_id(1) * (BC // 4) + tl.arange(0, BC // 4)).to(tl.uint32)
    x0, x1, x2, x3 = random_u32x4(row[:, None], group[None, :], seed_lo, seed_hi, offset)
    bits = interleave4(x0, x1, x2, x3, [BR, BC])
    mask = (row[:, None] < rows) & (col[None, :] < cols)
    tl.store(out_ptr + row[:, None] * cols + col[None, :], bits.to(tl.int64), mask=mask)


def random_bits(rows: int, cols: int, seed: int, offset: int, device) -> torch.Tensor:
    """The shared stream as an int64 ``(rows, cols)`` tensor of uint32 values on ``device``."""
    out = torch.empty((rows, cols), dtype=torch.int64, device=device)
    if out.numel() == 0:
        return out
    bc = min(max(next_pow2(cols), 4), 1024)
    br = max(1, min(next_pow2(rows), 4096 // bc))
    grid = (triton.cdiv(rows, br), triton.cdiv(cols, bc))
    with device_of(out):
        _random_bits_kernel[grid](out, rows, cols, *seed_args(seed, offset), BR=br, BC=bc)
    return out

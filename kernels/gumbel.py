"""Gumbel-softmax relaxed scalar quantization: forward and backward, noise regenerated in both.

Layouts as in :mod:`.nearest`: contiguous ``(M, D)`` ``z``, ``(D, K)`` codebook (``(N, 1)`` ``z``
for a global codebook); element ``r = m * D + d`` draws its noise for code ``k`` from the shared
stream at ``(r, k)``. A program's ``[K_PAD, BM, BD]`` tile (codes leading, so reductions over
codes stay in registers) gets its bits from one Philox call per four codes (``[K_PAD / 4, BM, BD]``
counters, the four lanes interleaved into the code axis); padded codes have logit -inf.
No ``N x K`` tensor is written unless ``probs`` is requested.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._utils import canonical, device_of, next_pow2, tile
from .philox import random_u32_block, seed_args, uniform_from_u32

CODES_PER_THREAD = 16
MAX_PARTIALS = 1024
KL_EPS = tl.constexpr(1e-10)


@triton.jit
def _softmax(x):
    """Softmax over the leading (code) axis of a 3-d tile."""
    e = tl.exp(x - tl.max(x, axis=0)[None, :, :])
    return e / tl.sum(e, axis=0)[None, :, :]


@triton.jit
def _logits_and_y(z, cb, offs, K, tau, seed_lo, seed_hi, offset, K_PAD: tl.constexpr):
    """``diff = z - c``, ``cp = c - p`` and ``logits`` (-inf on padded codes) as
    ``fqvae.reference.gumbel_logits`` computes them, with ``p`` = ``z`` clamped to its codebook
    column's range, and ``y``, all ``[K_PAD, BM, BD]``, for a ``[BM, BD]`` tile ``z`` and
    ``[K_PAD, BD]`` codes ``cb``."""
    k = tl.arange(0, K_PAD)
    live = (k < K)[:, None]
    lo = tl.min(tl.where(live, cb, float("inf")), axis=0)[None, :]
    hi = tl.max(tl.where(live, cb, float("-inf")), axis=0)[None, :]
    p = tl.where(z < lo, lo, tl.where(z > hi, hi, z))
    diff = z[None, :, :] - cb[:, None, :]
    cp = cb[:, None, :] - p[None, :, :]
    logits = 2.0 * cp * (z - p)[None, :, :] - cp * cp
    logits = tl.where((k < K)[:, None, None], logits, float("-inf"))
    u = uniform_from_u32(random_u32_block(offs, seed_lo, seed_hi, offset, K_PAD))
    noise = -tl.log(-tl.log(u))
    return diff, cp, logits, _softmax((logits + noise) / tau)


@triton.jit(do_not_specialize=["seed_lo", "seed_hi", "offset"])
def _gumbel_fwd_kernel(
    z_ptr,
    cbt_ptr,
    value_ptr,
    idx_ptr,
    kl_ptr,
    probs_ptr,
    M,
    D,
    K,
    tau,
    seed_lo,
    seed_hi,
    offset,
    BM: tl.constexpr,
    BD: tl.constexpr,
    K_PAD: tl.constexpr,
    HARD: tl.constexpr,
    WRITE_PROBS: tl.constexpr,
):
    """value, idx (int64): ``(M, D)``; cbt: the ``(K, D)`` transposed codebook; kl_ptr: a
    partial KL sum per program; probs: ``(M, D, K)``."""
    m = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
    d = tl.program_id(1) * BD + tl.arange(0, BD)
    k = tl.arange(0, K_PAD)
    kmask = (k < K)[:, None, None]
    valid = (m[:, None] < M) & (d[None, :] < D)
    offs = m[:, None] * D + d[None, :]
    z = tl.load(z_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    cb_mask = (k[:, None] < K) & (d[None, :] < D)
    cb = tl.load(cbt_ptr + k[:, None] * D + d[None, :], mask=cb_mask, other=0.0).to(tl.float32)

    _, _, logits, y = _logits_and_y(z, cb, offs, K, tau, seed_lo, seed_hi, offset, K_PAD)
    soft = tl.sum(y * cb[:, None, :], axis=0)
    y_max = tl.max(y, axis=0)
    idx = tl.min(tl.where(y == y_max[None, :, :], k[:, None, None], K_PAD), axis=0)
    idx = tl.where(idx < K, idx, 0)
    if HARD:
        picked = tl.load(cbt_ptr + idx * D + d[None, :], mask=valid, other=0.0).to(tl.float32)
        value = soft + (picked - soft)
    else:
        value = soft
    tl.store(value_ptr + offs, value.to(value_ptr.dtype.element_ty), mask=valid)
    tl.store(idx_ptr + offs, idx.to(tl.int64), mask=valid)

    q = _softmax(logits)
    kl = tl.sum(tl.where(kmask, q * tl.log(K * q + KL_EPS), 0.0), axis=0)
    kl = tl.sum(tl.sum(tl.where(valid, kl, 0.0), axis=1), axis=0)
    tl.store(kl_ptr + tl.program_id(0) * tl.num_programs(1) + tl.program_id(1), kl)
    if WRITE_PROBS:
        probs = probs_ptr + offs[None, :, :] * K + k[:, None, None]
        tl.store(probs, y.to(probs_ptr.dtype.element_ty), mask=valid[None, :, :] & kmask)


@triton.jit(do_not_specialize=["seed_lo", "seed_hi", "offset"])
def _gumbel_bwd_kernel(
    gv_ptr,
    gkl_ptr,
    gp_ptr,
    z_ptr,
    cbt_ptr,
    gz_ptr,
    gc_part_ptr,
    M,
    D,
    K,
    n_elems,
    tau,
    seed_lo,
    seed_hi,
    offset,
    BM: tl.constexpr,
    BD: tl.constexpr,
    K_PAD: tl.constexpr,
    HAS_GV: tl.constexpr,
    HAS_GKL: tl.constexpr,
    HAS_GP: tl.constexpr,
):
    """gz ``(M, D)``; gc_part ``(programs_m, D, K)`` fp32 partial codebook gradients.

    Gradients of ``<gv, soft value> + gkl * kl + <gp, y>`` (``gp``: ``(M, D, K)``). Program
    ``(p, j)`` walks the row blocks ``p, p + P, ...`` of latent block ``j``, accumulating codebook
    contributions elementwise and reducing over rows once at the end.
    """
    pid_m = tl.program_id(0)
    d = tl.program_id(1) * BD + tl.arange(0, BD)
    k = tl.arange(0, K_PAD)
    kmask = (k < K)[:, None, None]
    cb_mask = (k[:, None] < K) & (d[None, :] < D)
    cb = tl.load(cbt_ptr + k[:, None] * D + d[None, :], mask=cb_mask, other=0.0).to(tl.float32)
    if HAS_GKL:
        gkl = tl.load(gkl_ptr).to(tl.float32) / n_elems
    acc = tl.zeros([K_PAD, BM, BD], dtype=tl.float32)
    for mb in range(pid_m, tl.cdiv(M, BM), tl.num_programs(0)):
        m = tl.cast(mb, tl.int64) * BM + tl.arange(0, BM)
        valid = (m[:, None] < M) & (d[None, :] < D)
        offs = m[:, None] * D + d[None, :]
        z = tl.load(z_ptr + offs, mask=valid, other=0.0).to(tl.float32)
        diff, cp, logits, y = _logits_and_y(z, cb, offs, K, tau, seed_lo, seed_hi, offset, K_PAD)
        grad_y = tl.zeros([K_PAD, BM, BD], dtype=tl.float32)
        grad_c = tl.zeros([K_PAD, BM, BD], dtype=tl.float32)
        if HAS_GV:
            gv = tl.load(gv_ptr + offs, mask=valid, other=0.0).to(tl.float32)[None, :, :]
            grad_y = grad_y + gv * cb[:, None, :]
            grad_c = grad_c + gv * y
        if HAS_GP:
            gp_ptrs = gp_ptr + offs[None, :, :] * K + k[:, None, None]
            gp = tl.load(gp_ptrs, mask=valid[None, :, :] & kmask, other=0.0)
            grad_y = grad_y + gp.to(tl.float32)
        dot = tl.sum(y * grad_y, axis=0)[None, :, :]
        grad_logits = y * (grad_y - dot) / tau
        if HAS_GKL:
            q = _softmax(logits)
            kq = K * q
            h = tl.log(kq + KL_EPS) + kq / (kq + KL_EPS)
            qh = tl.sum(q * h, axis=0)[None, :, :]
            grad_logits = grad_logits + gkl * q * (h - qh)
        gz = tl.sum(2.0 * grad_logits * cp, axis=0)
        tl.store(gz_ptr + offs, gz.to(gz_ptr.dtype.element_ty), mask=valid)
        grad_c = grad_c + 2.0 * grad_logits * diff
        acc += tl.where(valid[None, :, :], grad_c, 0.0)
    out = gc_part_ptr + (pid_m * D + d[None, :]) * K + k[:, None]
    tl.store(out, tl.sum(acc, axis=1), mask=cb_mask)


def _launch_shape(z: torch.Tensor, codebook: torch.Tensor):
    z2, m, d = canonical(z, codebook)
    k = codebook.shape[1]
    k_pad = max(next_pow2(k), 4)
    return z2, m, d, k, k_pad, *tile(m, d, k_pad, CODES_PER_THREAD)


def gumbel_forward(
    z: torch.Tensor,
    codebook: torch.Tensor,
    tau: float,
    seed: int,
    offset: int,
    hard: bool,
    return_probs: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(value, idx, kl, probs)`` for ``(M, D)`` ``z``; ``probs`` is ``(M, D, K)`` or ``None``."""
    shape = z.shape
    z2, m, d, k, k_pad, bm, bd, warps = _launch_shape(z, codebook)
    grid = (triton.cdiv(m, bm), triton.cdiv(d, bd))
    value = torch.empty_like(z2)
    idx = torch.empty(z2.shape, dtype=torch.int64, device=z.device)
    partial = torch.empty(grid[0] * grid[1], dtype=torch.float32, device=z.device)
    probs = torch.empty((*shape, k), dtype=z.dtype, device=z.device) if return_probs else None
    with device_of(z2):
        _gumbel_fwd_kernel[grid](
            z2,
            codebook.T.contiguous(),
            value,
            idx,
            partial,
            value if probs is None else probs,
            m,
            d,
            k,
            float(tau),
            *seed_args(seed, offset),
            BM=bm,
            BD=bd,
            K_PAD=k_pad,
            HARD=bool(hard),
            WRITE_PROBS=probs is not None,
            num_warps=warps,
        )
    kl = partial.sum() / z.numel()
    return value.reshape(shape), idx.reshape(shape), kl, probs


def gumbel_backward(
    grad_value: torch.Tensor | None,
    grad_kl: torch.Tensor | None,
    grad_probs: torch.Tensor | None,
    z: torch.Tensor,
    codebook: torch.Tensor,
    tau: float,
    seed: int,
    offset: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gz, gc)``: ``gz`` like ``z``, ``gc`` like ``codebook`` (see the backend contract)."""
    shape = z.shape
    z2, m, d, k, k_pad, bm, bd, warps = _launch_shape(z, codebook)
    blocks_d = triton.cdiv(d, bd)
    programs_m = min(triton.cdiv(m, bm), max(1, MAX_PARTIALS // blocks_d))
    gz = torch.empty_like(z2)
    part = torch.empty((programs_m, d, k), dtype=torch.float32, device=z.device)
    gv = z2 if grad_value is None else grad_value.contiguous()
    gkl = z2 if grad_kl is None else grad_kl.reshape(1)
    gp = z2 if grad_probs is None else grad_probs.contiguous()
    with device_of(z2):
        _gumbel_bwd_kernel[(programs_m, blocks_d)](
            gv,
            gkl,
            gp,
            z2,
            codebook.T.contiguous(),
            gz,
            part,
            m,
            d,
            k,
            float(z.numel()),
            float(tau),
            *seed_args(seed, offset),
            BM=bm,
            BD=bd,
            K_PAD=k_pad,
            HAS_GV=grad_value is not None,
            HAS_GKL=grad_kl is not None,
            HAS_GP=grad_probs is not None,
            num_warps=warps,
        )
    return gz.reshape(shape), part.sum(0).to(codebook.dtype)

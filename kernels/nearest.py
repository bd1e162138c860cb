"""Nearest-value scalar quantization: forward lookup + squared error, and the backward pass.

Layouts: ``z`` is a contiguous ``(M, D)`` tensor (fp16/bf16/fp32) whose column ``d`` uses
codebook row ``d`` of a contiguous ``(D, K)`` codebook (a global codebook is handled by viewing
``z`` as ``(N, 1)``). A program owns a ``[BM, BD]`` tile of ``z`` and holds the ``[K_PAD, BD]``
codebook columns in registers; distances live in a ``[K_PAD, BM, BD]`` tile (codes leading, so
each thread reduces its elements' codes in registers), padded codes at +inf.
Reductions are deterministic: per-program partial sums, then a fixed-order ``torch.sum``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._utils import canonical, device_of, next_pow2, tile

BWD_CODES_PER_THREAD = 32
MAX_PARTIALS = 1024


def fwd_codes_per_thread(k_pad: int) -> int:
    """Codes a thread holds in the forward tile: 512-element programs for K >= 16, 256 below,
    at most 256 codes a thread. From the H100 sweep of benchmarks/tune_nearest.py (global
    codebook): at 2^24 elements, K = 16, 64 codes (73% of copy bandwidth) beat 16-256 codes
    (42-64%) in two runs; K = 64 was fastest at 256 in two runs. The K = 8 case fits in L2 and two
    sweeps disagreed on its best size, so its 256-element programs are the less certain choice."""
    return min(256, 4 * k_pad) if k_pad >= 16 else 2 * k_pad


@triton.jit
def _nearest_fwd_kernel(
    z_ptr,
    cbt_ptr,
    q_ptr,
    idx_ptr,
    sse_ptr,
    M,
    D,
    K,
    BM: tl.constexpr,
    BD: tl.constexpr,
    K_PAD: tl.constexpr,
):
    """q, idx: ``(M, D)``; cbt: the ``(K, D)`` transposed codebook; sse_ptr: one fp32 partial
    sum of ``(z - q)^2`` per program."""
    m = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
    d = tl.program_id(1) * BD + tl.arange(0, BD)
    k = tl.arange(0, K_PAD)
    valid = (m[:, None] < M) & (d[None, :] < D)
    offs = m[:, None] * D + d[None, :]
    z = tl.load(z_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    cb_mask = (k[:, None] < K) & (d[None, :] < D)
    cb = tl.load(cbt_ptr + k[:, None] * D + d[None, :], mask=cb_mask, other=0.0).to(tl.float32)

    # z beyond a row's range takes its end value: clamping first keeps the distances of a huge
    # finite z from rounding to ties (NaN fails both comparisons and stays NaN)
    lo = tl.min(tl.where(cb_mask, cb, float("inf")), axis=0)
    hi = tl.max(tl.where(cb_mask, cb, -float("inf")), axis=0)
    zc = tl.where(z > hi[None, :], hi[None, :], tl.where(z < lo[None, :], lo[None, :], z))
    diff = zc[None, :, :] - cb[:, None, :]
    dist = tl.where((k < K)[:, None, None], diff * diff, float("inf"))
    best = tl.min(dist, axis=0)
    idx = tl.min(tl.where(dist == best[None, :, :], k[:, None, None], K_PAD), axis=0)
    finite = tl.abs(z) < float("inf")
    idx = tl.where(finite & (idx < K), idx, 0)

    code = tl.load(cbt_ptr + idx * D + d[None, :], mask=valid, other=0.0).to(tl.float32)
    code = tl.where(finite, code, float("nan"))
    err = z - code
    sse = tl.sum(tl.sum(tl.where(valid, err * err, 0.0), axis=1), axis=0)
    # Straight-through forward value: exactly the codebook value (NaN for non-finite z).
    tl.store(q_ptr + offs, code.to(q_ptr.dtype.element_ty), mask=valid)
    tl.store(idx_ptr + offs, idx.to(idx_ptr.dtype.element_ty), mask=valid)
    tl.store(sse_ptr + tl.program_id(0) * tl.num_programs(1) + tl.program_id(1), sse)


@triton.jit
def _nearest_bwd_kernel(
    gq_ptr,
    coef_z_ptr,
    coef_c_ptr,
    z_ptr,
    cbt_ptr,
    idx_ptr,
    gz_ptr,
    gc_part_ptr,
    M,
    D,
    K,
    BM: tl.constexpr,
    BD: tl.constexpr,
    K_PAD: tl.constexpr,
    HAS_GQ: tl.constexpr,
):
    """gz ``(M, D)``; gc_part ``(programs_m, D, K)`` fp32 partial codebook gradients.

    Program ``(p, j)`` walks the row blocks ``p, p + P, ...`` of latent block ``j``, accumulating
    one-hot contributions elementwise and reducing over rows once at the end.
    """
    pid_m = tl.program_id(0)
    d = tl.program_id(1) * BD + tl.arange(0, BD)
    k = tl.arange(0, K_PAD)
    coef_z = tl.load(coef_z_ptr).to(tl.float32)
    coef_c = tl.load(coef_c_ptr).to(tl.float32)
    acc = tl.zeros([K_PAD, BM, BD], dtype=tl.float32)
    for mb in range(pid_m, tl.cdiv(M, BM), tl.num_programs(0)):
        m = tl.cast(mb, tl.int64) * BM + tl.arange(0, BM)
        valid = (m[:, None] < M) & (d[None, :] < D)
        offs = m[:, None] * D + d[None, :]
        z = tl.load(z_ptr + offs, mask=valid, other=0.0).to(tl.float32)
        idx = tl.load(idx_ptr + offs, mask=valid, other=0).to(tl.int32)
        code = tl.load(cbt_ptr + idx * D + d[None, :], mask=valid, other=0.0).to(tl.float32)
        finite = (z - z) == 0.0  # non-finite z: NaN gradient, nothing to the codebook
        code = tl.where(finite, code, float("nan"))
        gz = coef_z * (z - code)
        if HAS_GQ:
            gz = gz + tl.load(gq_ptr + offs, mask=valid, other=0.0).to(tl.float32)
        tl.store(gz_ptr + offs, gz.to(gz_ptr.dtype.element_ty), mask=valid)
        v = tl.where(valid & finite, coef_c * (code - z), 0.0)
        onehot = tl.where(idx[None, :, :] == k[:, None, None], 1.0, 0.0)
        acc += onehot * v[None, :, :]
    part = tl.sum(acc, axis=1)
    out = gc_part_ptr + (pid_m * D + d[None, :]) * K + k[:, None]
    tl.store(out, part, mask=(k[:, None] < K) & (d[None, :] < D))


def nearest_forward(
    z: torch.Tensor, codebook: torch.Tensor, index_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(q, idx, sse)`` for ``(M, D)`` ``z`` and a ``(D, K)`` or ``(1, K)`` codebook."""
    shape = z.shape
    z2, m, d = canonical(z, codebook)
    k = codebook.shape[1]
    k_pad = next_pow2(k)
    bm, bd, warps = tile(m, d, k_pad, fwd_codes_per_thread(k_pad))
    grid = (triton.cdiv(m, bm), triton.cdiv(d, bd))
    q = torch.empty_like(z2)
    idx = torch.empty(z2.shape, dtype=index_dtype, device=z.device)
    partial = torch.empty(grid[0] * grid[1], dtype=torch.float32, device=z.device)
    with device_of(z2):
        _nearest_fwd_kernel[grid](
            z2,
            codebook.T.contiguous(),
            q,
            idx,
            partial,
            m,
            d,
            k,
            BM=bm,
            BD=bd,
            K_PAD=k_pad,
            num_warps=warps,
        )
    return q.reshape(shape), idx.reshape(shape), partial.sum()


def nearest_backward(
    grad_q: torch.Tensor | None,
    coef_z: torch.Tensor,
    coef_c: torch.Tensor,
    z: torch.Tensor,
    codebook: torch.Tensor,
    idx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gz, gc)``: ``gz`` like ``z``, ``gc`` like ``codebook`` (see the backend contract)."""
    shape = z.shape
    z2, m, d = canonical(z, codebook)
    k = codebook.shape[1]
    k_pad = next_pow2(k)
    bm, bd, warps = tile(m, d, k_pad, BWD_CODES_PER_THREAD)
    blocks_d = triton.cdiv(d, bd)
    programs_m = min(triton.cdiv(m, bm), max(1, MAX_PARTIALS // blocks_d))
    gz = torch.empty_like(z2)
    part = torch.empty((programs_m, d, k), dtype=torch.float32, device=z.device)
    gq = z2 if grad_q is None else grad_q.contiguous()
    with device_of(z2):
        _nearest_bwd_kernel[(programs_m, blocks_d)](
            gq,
            coef_z.reshape(1),
            coef_c.reshape(1),
            z2,
            codebook.T.contiguous(),
            idx.contiguous(),
            gz,
            part,
            m,
            d,
            k,
            BM=bm,
            BD=bd,
            K_PAD=k_pad,
            HAS_GQ=grad_q is not None,
            num_warps=warps,
        )
    return gz.reshape(shape), part.sum(0).to(codebook.dtype)

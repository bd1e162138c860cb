"""The executable specification of fqvae's three operators, in plain eager PyTorch.

Every fast backend (C++, Triton, CUDA) is tested against these functions, forward and backward.
They favour clarity over speed: they build the full ``N x K`` tensors and rely on autograd.

Randomness is counter-based. ``random_bits(rows, cols, seed, offset)[r, c]`` is lane ``c % 4`` of
Philox-4x32-10 with counter ``(c // 4, r mod 2^32, r // 2^32, offset)`` and key
``(seed mod 2^32, seed // 2^32)``. Every backend uses this one layout, so the same
``(seed, offset)`` gives the same random bits everywhere (bit for bit) and the same noise up to
the rounding of the logarithms (fast backends may use a faster float32 log):

* Gumbel noise for flat element ``r`` and codebook entry ``k`` comes from ``bits[r, k]``:
  ``u = (bits >> 9) * 2^-23 + 2^-24`` (a float32 in (0, 1)), ``g = -log(-log(u))`` in float32.
* The permutation of column ``l`` (one latent) is the stable ascending argsort over the batch of
  ``bits[l, b]``, ``b = 0..B-1``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
MASK32 = 0xFFFFFFFF
KL_EPS = 1e-10


class NearestResult(NamedTuple):
    """Output of nearest quantization: ``quantized`` (like ``z``), ``indices``, ``loss`` (0-d)."""

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor


class GumbelResult(NamedTuple):
    """Output of Gumbel quantization: ``value`` (like ``z``), ``indices``, ``kl`` (0-d), ``probs``.

    ``probs`` has shape ``z.shape + (K,)`` when requested, else ``None``.
    """

    value: torch.Tensor
    indices: torch.Tensor
    kl: torch.Tensor
    probs: torch.Tensor | None


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``a * b`` for a 32-bit constant ``a`` and int64 ``b < 2^32``.

    The product is split into 16-bit halves of ``b`` so no intermediate overflows int64.
    """
    b_hi, b_lo = b >> 16, b & 0xFFFF
    lo_part = a * b_lo
    mid = a * b_hi + (lo_part >> 16)
    hi = mid >> 16
    lo = ((mid & 0xFFFF) << 16) | (lo_part & 0xFFFF)
    return hi, lo


def philox4x32_10(
    counter: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox-4x32-10 on int64 tensors of uint32 words; ``seed`` is split into the 2-word key."""
    c0, c1, c2, c3 = counter
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    for round_ in range(10):
        if round_:
            k0, k1 = (k0 + PHILOX_W0) & MASK32, (k1 + PHILOX_W1) & MASK32
        hi0, lo0 = _mulhilo(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def random_bits(
    rows: int, cols: int, seed: int, offset: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The shared random stream: an int64 ``(rows, cols)`` tensor of uint32 values."""
    groups = (cols + 3) // 4  # one Philox call yields the 4 lanes of columns 4g .. 4g+3
    r = torch.arange(rows, dtype=torch.int64, device=device)[:, None].expand(rows, groups)
    g = torch.arange(groups, dtype=torch.int64, device=device)[None, :].expand(rows, groups)
    counter = (g, r & MASK32, r >> 32, torch.full_like(r, offset & MASK32))
    lanes = torch.stack(philox4x32_10(counter, seed), dim=-1)  # (rows, groups, 4)
    return lanes.reshape(rows, 4 * groups)[:, :cols]


def uniform_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """Map uint32 values (int64 tensor) to float32 uniforms in the open interval (0, 1)."""
    return (bits >> 9).to(torch.float32) * 2.0**-23 + 2.0**-24


def gumbel_noise(
    rows: int, cols: int, seed: int, offset: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Standard Gumbel noise, float32 ``(rows, cols)``, from the shared random stream."""
    u = uniform_from_bits(random_bits(rows, cols, seed, offset, device))
    return -torch.log(-torch.log(u))


def _latent_last(
    z: torch.Tensor, codebook: torch.Tensor, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the latent axis last and return ``(z_moved, codebook_rows)``.

    ``codebook_rows`` has shape ``(D, K)`` (per-dim) or ``(1, K)`` (global): it broadcasts against
    ``z_moved[..., None]``.
    """
    z_moved = z.movedim(dim, -1)
    rows = codebook if codebook.dim() == 2 else codebook[None, :]
    return z_moved, rows


def _mean(x: torch.Tensor) -> torch.Tensor:
    """Mean that is 0 (not NaN) for an empty tensor."""
    return x.sum() / max(x.numel(), 1)


def quantize_nearest(
    z: torch.Tensor,
    codebook: torch.Tensor,
    dim: int = -1,
    *,
    quant_weight: float = 0.0,
    commit_weight: float = 0.0,
    index_dtype: torch.dtype = torch.int64,
) -> NearestResult:
    """Nearest-value scalar quantization with a straight-through gradient.

    Args:
        z: float tensor of any shape; ``dim`` is the latent axis of size D.
        codebook: ``(K,)`` shared by all latents, or ``(D, K)`` one row per latent.
    Returns:
        ``quantized``: ``codebook[index]`` in ``z.dtype``; its gradient passes straight to ``z``.
        Non-finite ``z`` gives a NaN value and index 0.
        ``indices``: argmin of ``(z - c_k)^2``, lowest index on ties, ``index_dtype``; a
        finite ``z`` beyond the row's range takes its end value at any magnitude.
        ``loss``: ``quant_weight * mean((sg(z) - q)^2) + commit_weight * mean((z - sg(q))^2)``,
        0-d float32 (float64 for float64 inputs); the codebook learns from the first term only.
    """
    acc = torch.float64 if torch.float64 in (z.dtype, codebook.dtype) else torch.float32
    z_moved, rows = _latent_last(z, codebook, dim)
    zf, cf = z_moved.to(acc), rows.to(acc)
    # z beyond the codebook's range has the end value as its nearest; clamping first keeps the
    # distances small, so a huge finite z (2e7, 1e30) cannot round to a tie (NaN stays NaN)
    zc = torch.minimum(torch.maximum(zf, cf.amin(-1)), cf.amax(-1))
    index = ((zc[..., None] - cf) ** 2).argmin(dim=-1)
    index = torch.where(torch.isfinite(zf), index, 0)
    q = torch.gather(cf.expand(*zf.shape, -1), -1, index[..., None]).squeeze(-1)
    q = torch.where(torch.isfinite(zf), q, torch.nan)
    quant = _mean((zf.detach() - q) ** 2)
    commit = _mean((zf - q.detach()) ** 2)
    # exactly the codebook value forward (z - sg(z) is 0), identity gradient to z backward
    quantized = (q.detach() + (zf - zf.detach())).to(z.dtype).movedim(-1, dim)
    loss = quant_weight * quant + commit_weight * commit
    return NearestResult(quantized, index.to(index_dtype).movedim(-1, dim), loss)


def gumbel_logits(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``(..., K)`` logits ``-(z - c_k)^2`` up to a shift that is the same for every code.

    With ``p`` = ``z`` clamped to its codebook row's range (detached), they are
    ``2 (c_k - p)(z - p) - (c_k - p)^2`` = ``(z - p)^2 - (z - c_k)^2``: exactly ``-(z - c_k)^2``
    inside the range, and outside it free of the cancellation between two huge squares (the
    nearest end code gets 0 and the others negative values, so a huge ``z`` still picks the end
    code and nothing overflows to +inf). ``z``: ``(...)``; ``codebook``: ``(..., K)`` rows.
    """
    lo, hi = codebook.amin(-1).detach(), codebook.amax(-1).detach()
    p = torch.minimum(torch.maximum(z.detach(), lo), hi)[..., None]
    d = codebook - p
    return 2 * d * (z[..., None] - p) - d * d


def quantize_gumbel(
    z: torch.Tensor,
    codebook: torch.Tensor,
    dim: int = -1,
    *,
    tau: float = 1.0,
    seed: int = 0,
    offset: int = 0,
    hard: bool = False,
    return_probs: bool = False,
) -> GumbelResult:
    """Gumbel-softmax relaxed scalar quantization.

    Logits ``a_k = -(z - c_k)^2`` (computed by :func:`gumbel_logits`); ``y = softmax((a + g) /
    tau)`` with Gumbel noise ``g`` from the shared stream (element ``r`` is the flat index of ``z``
    with ``dim`` moved last).
    Returns:
        ``value``: ``sum_k y_k c_k`` in ``z.dtype``, or with ``hard`` the value ``c[argmax y]``
        carrying the soft value's gradient (straight-through).
        ``indices``: ``argmax_k y_k`` (int64, lowest index on ties).
        ``kl``: mean over elements of ``sum_k q_k log(K q_k + 1e-10)``, ``q = softmax(a)``.
        ``probs``: ``y`` with shape ``z.shape + (K,)`` in ``z.dtype`` when ``return_probs``.
    """
    acc = torch.float64 if torch.float64 in (z.dtype, codebook.dtype) else torch.float32
    z_moved, rows = _latent_last(z, codebook, dim)
    zf, cf = z_moved.to(acc), rows.to(acc)
    k = cf.shape[-1]
    logits = gumbel_logits(zf, cf)
    noise = gumbel_noise(zf.numel(), k, seed, offset, z.device).to(acc).reshape(logits.shape)
    y = torch.softmax((logits + noise) / tau, dim=-1)
    soft = (y * cf).sum(-1)
    index = y.argmax(dim=-1)
    if hard:
        picked = torch.gather(cf.expand(*zf.shape, -1), -1, index[..., None]).squeeze(-1)
        value = soft + (picked - soft).detach()
    else:
        value = soft
    q = torch.softmax(logits, dim=-1)
    kl = _mean((q * torch.log(k * q + KL_EPS)).sum(-1))
    probs = y.to(z.dtype).movedim(-2, dim % z.dim()) if return_probs else None
    return GumbelResult(value.to(z.dtype).movedim(-1, dim), index.movedim(-1, dim), kl, probs)


def permutations(batch: int, columns: int, seed: int, offset: int, device="cpu") -> torch.Tensor:
    """``(batch, columns)`` int64: column ``l`` is an independent uniform batch permutation."""
    bits = random_bits(columns, batch, seed, offset, device)
    return torch.argsort(bits, dim=1, stable=True).T


def permute_dims(
    x: torch.Tensor, *, seed: int = 0, offset: int = 0, batch_dim: int = 0, dim: int = 1
) -> torch.Tensor:
    """Shuffle the batch independently for every index along ``dim`` (total-correlation sampling).

    ``out[b, l, ...] = x[perm_l[b], l, ...]`` with ``perm = permutations(B, L, seed, offset)``;
    every other axis moves with its ``(b, l)`` slot as a unit. Out of place; gradients flow back
    through the inverse permutation.
    """
    x3 = x.movedim((batch_dim, dim), (0, 1))
    batch, columns = x3.shape[0], x3.shape[1]
    perm = permutations(batch, columns, seed, offset, x.device)
    index = perm.reshape(batch, columns, *([1] * (x3.dim() - 2))).expand(x3.shape)
    return torch.gather(x3, 0, index).movedim((0, 1), (batch_dim, dim))

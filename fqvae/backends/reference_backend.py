"""The kernel contract in eager PyTorch: forwards call :mod:`fqvae.reference`, backwards spell out
the gradient formulas that the fused kernels implement (tested against reference autograd)."""

from __future__ import annotations

import torch

from fqvae import reference

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
random_bits = reference.random_bits


def available(device: torch.device) -> str | None:
    return None


def _acc(z: torch.Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def _rows(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``(M, D, K)`` view of the codebook row each element uses, in the accumulate dtype."""
    return codebook.to(_acc(z)).expand(z.shape[0], z.shape[1], -1)


def _scatter_rows(values: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Sum ``(M, D, K)`` per-element contributions into the ``(C, K)`` codebook gradient."""
    summed = values.sum(0)
    return (summed if codebook.shape[0] > 1 else summed.sum(0, keepdim=True)).to(codebook.dtype)


def nearest_forward(z, codebook, index_dtype):
    cb = codebook[0] if codebook.shape[0] == 1 else codebook
    # two halves give exactly the mean (one weight of 0 would turn an overflowing mean to NaN)
    out = reference.quantize_nearest(
        z, cb, -1, quant_weight=0.5, commit_weight=0.5, index_dtype=index_dtype
    )
    return out.quantized, out.indices, out.loss * z.numel()


def nearest_backward(grad_q, coef_z, coef_c, z, codebook, idx):
    zf = z.to(_acc(z))
    finite = torch.isfinite(zf)
    q = _rows(z, codebook).gather(-1, idx.long()[..., None]).squeeze(-1)
    gz = coef_z * (zf - torch.where(finite, q, torch.nan))  # NaN for non-finite z
    if grad_q is not None:
        gz = gz + grad_q.to(gz.dtype)
    onehot = torch.nn.functional.one_hot(idx.long(), codebook.shape[-1]).to(zf.dtype)
    pull = torch.where(finite, coef_c * (q - zf), 0.0)  # non-finite z leaves the codebook alone
    gc = _scatter_rows(onehot * pull[..., None], codebook)
    return gz.to(z.dtype), gc


def gumbel_forward(z, codebook, tau, seed, offset, hard, return_probs):
    cb = codebook[0] if codebook.shape[0] == 1 else codebook
    out = reference.quantize_gumbel(
        z, cb, -1, tau=tau, seed=seed, offset=offset, hard=hard, return_probs=return_probs
    )
    return out.value, out.indices, out.kl, out.probs


def gumbel_backward(grad_value, grad_kl, grad_probs, z, codebook, tau, seed, offset):
    acc = _acc(z)
    c = _rows(z, codebook)
    k = c.shape[-1]
    logits = reference.gumbel_logits(z.to(acc), c)
    zf = z.to(acc)[..., None]
    p = torch.minimum(torch.maximum(zf, c.amin(-1, keepdim=True)), c.amax(-1, keepdim=True))
    noise = reference.gumbel_noise(z.numel(), k, seed, offset, z.device).to(acc).reshape(c.shape)
    y = torch.softmax((logits + noise) / tau, dim=-1)
    grad_y = torch.zeros_like(y)
    grad_c = torch.zeros_like(y)
    if grad_value is not None:
        gv = grad_value.to(acc)[..., None]
        grad_y = grad_y + gv * c
        grad_c = grad_c + gv * y
    if grad_probs is not None:
        grad_y = grad_y + grad_probs.to(acc)
    grad_logits = y * (grad_y - (y * grad_y).sum(-1, keepdim=True)) / tau
    if grad_kl is not None:
        q = torch.softmax(logits, dim=-1)
        h = torch.log(k * q + reference.KL_EPS) + k * q / (k * q + reference.KL_EPS)
        grad_logits = grad_logits + (grad_kl.to(acc) / z.numel()) * q * (
            h - (q * h).sum(-1, keepdim=True)
        )
    gz = (2.0 * grad_logits * (c - p)).sum(-1)
    grad_c = grad_c + 2.0 * grad_logits * (zf - c)
    return gz.to(z.dtype), _scatter_rows(grad_c, codebook)


def permute_forward(x, seed, offset):
    perm = reference.permutations(x.shape[0], x.shape[1], seed, offset, x.device).contiguous()
    return reference.permute_dims(x, seed=seed, offset=offset), perm


def permute_backward(grad, perm):
    index = perm[..., None].expand(grad.shape)
    return torch.zeros_like(grad).scatter_(0, index, grad)

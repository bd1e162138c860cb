"""What every op shares: argument checks, canonical layouts, seeds, and the eager twin."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

MAX_K = 256
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INDEX_DTYPES = (torch.int16, torch.int32, torch.int64, torch.uint8)


def _acc_dtype(z: Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def _check_dim(dim: int, ndim: int, name: str) -> int:
    if not isinstance(dim, int) or not -ndim <= dim < ndim:
        raise ValueError(f"{name}={dim!r} is out of range for a tensor with {ndim} dimensions")
    return dim % ndim


def _check_quantize_args(z: Tensor, codebook: Tensor, dim: int) -> int:
    if not isinstance(z, Tensor) or not isinstance(codebook, Tensor):
        raise TypeError("z and codebook must be torch.Tensor")
    if z.dtype not in _FLOATS:
        raise TypeError(f"z must be a floating-point tensor (fp16/bf16/fp32/fp64), got {z.dtype}")
    if codebook.dtype not in _FLOATS:
        raise TypeError(f"codebook must be a floating-point tensor, got {codebook.dtype}")
    if (z.dtype == torch.float64) != (codebook.dtype == torch.float64):
        raise TypeError(
            f"codebook dtype {codebook.dtype} cannot be mixed with z dtype {z.dtype}: float64 "
            "inputs need a float64 codebook and vice versa"
        )
    if z.device != codebook.device:
        raise ValueError(f"z is on {z.device} but codebook is on {codebook.device}")
    if z.dim() == 0:
        raise ValueError("z must have at least one dimension (the latent axis)")
    dim = _check_dim(dim, z.dim(), "dim")
    latents = z.shape[dim]
    if codebook.dim() == 2:
        if codebook.shape[0] != latents:
            raise ValueError(
                f"a per-dimension codebook must have shape (D, K) with D = z.shape[{dim}] = "
                f"{latents}, got {tuple(codebook.shape)}"
            )
    elif codebook.dim() != 1:
        raise ValueError(f"codebook must have shape (K,) or (D, K), got {tuple(codebook.shape)}")
    k = codebook.shape[-1]
    if not 2 <= k <= MAX_K:
        raise ValueError(f"codebook size K must be in [2, {MAX_K}], got {k}")
    return dim


class NonFiniteCodebook(ValueError):
    """The codebook passed to an op holds NaN or inf."""


def _check_codebook_finite(codebook: Tensor) -> None:
    """Raise :class:`NonFiniteCodebook` on a non-finite codebook. CPU only: on a GPU the check
    would cost a host sync on every call."""
    if codebook.device.type == "cpu" and not bool(torch.isfinite(codebook).all()):
        raise NonFiniteCodebook("codebook contains non-finite values (NaN or inf)")


def _canonical(z: Tensor, codebook: Tensor, dim: int) -> tuple[Tensor, Tensor, torch.Size]:
    """``(M, D)`` contiguous z, ``(C, K)`` contiguous codebook, and the moved shape of ``z``."""
    moved = z if dim == z.dim() - 1 else z.movedim(dim, -1)
    z2 = moved if moved.dim() == 2 else moved.reshape(-1, moved.shape[-1])
    cb2 = codebook if codebook.dim() == 2 else codebook.reshape(1, -1)
    return z2.contiguous(), cb2.contiguous(), moved.shape


def _restore(t: Tensor, moved: torch.Size, dim: int) -> Tensor:
    """An ``(M, D)`` result back in the layout of ``z`` (the inverse of :func:`_canonical`)."""
    if t.shape != moved:
        t = t.reshape(moved)
    return t if dim == len(moved) - 1 else t.movedim(-1, dim)


def _rng_tensor(seed: int | Tensor | None, offset: int) -> Tensor:
    """Pack ``(seed, offset)`` into a CPU int64 tensor of shape (2,)."""
    if not isinstance(offset, int) or not 0 <= offset < 2**32:
        raise ValueError(f"offset must be an int in [0, 2**32), got {offset!r}")
    if seed is None:
        seed = torch.randint(0, 2**62, (), dtype=torch.int64)
    if isinstance(seed, Tensor):
        if seed.dtype != torch.int64 or seed.numel() != 1:
            raise TypeError("a tensor seed must be a one-element int64 tensor")
        return torch.stack([seed.reshape(()).cpu(), torch.tensor(offset, dtype=torch.int64)])
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an int in [0, 2**63), a tensor or None, got {seed!r}")
    return torch.tensor([seed, offset], dtype=torch.int64)


def _seed_offset(rng: Tensor) -> tuple[int, int]:
    seed, offset = rng.tolist()
    return int(seed) & (2**64 - 1), int(offset)


_PLAIN = (Tensor, torch.nn.Parameter)


def _eager(*tensors: Tensor) -> bool:
    """Whether a call may take an op's eager twin: not tracing, and only ordinary tensors."""
    return not torch.compiler.is_compiling() and all(type(t) in _PLAIN for t in tensors)


def _eager_twin(name: str, impl: Callable, setup_context: Callable, grad: Callable) -> Callable:
    """A custom op's eager twin: ``apply`` of an ``autograd.Function`` with the op's
    implementation, context setup and backward formula (``grad`` calls the backward
    implementation directly), or the bare implementation when no gradient is needed."""

    def forward(ctx, *args):
        out = impl(*args)
        setup_context(ctx, args, out)
        return out

    def backward(ctx, *grads):
        return grad(ctx, *grads)

    body = {"forward": staticmethod(forward), "backward": staticmethod(backward)}
    apply = type(name, (torch.autograd.Function,), body).apply

    def call(*args):
        if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
            return apply(*args)
        return impl(*args)

    return call


# ----------------------------------------------------------------------------- nearest

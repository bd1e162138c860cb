"""fqvae's operators as autograd-aware ``torch.library`` custom ops.

Public functions (stable API):

* :func:`quantize_nearest` — nearest scalar codebook lookup with a straight-through gradient and
  the fused QLAE quantization/commitment loss;
* :func:`quantize_gumbel` — Gumbel-softmax relaxed scalar quantization with the KL to the uniform
  prior;
* :func:`permute_dims` — per-latent batch permutation for total-correlation sampling.

Each public function validates its arguments, moves the latent axis last and calls a custom op
(``torch.ops.fqvae.*``). The op runs the backend chosen by :mod:`fqvae.backends` and has a fake
implementation and an autograd formula, so it works under ``torch.compile(fullgraph=True)``.
Eager calls on ordinary tensors take the op's *eager twin*: an ``autograd.Function`` that runs
the same implementation, context setup and backward without the dispatcher round trips of a
Python custom op (which cost more than a small kernel).
Random ops take a seed: an ``int``, a 0-d int64 tensor, or ``None`` to draw one from PyTorch's
default generator (so ``torch.manual_seed`` makes runs reproducible).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from fqvae import backends
from fqvae.reference import GumbelResult, NearestResult

MAX_K = 256
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INDEX_DTYPES = (torch.int16, torch.int32, torch.int64, torch.uint8)

__all__ = [
    "MAX_K",
    "GumbelResult",
    "NearestResult",
    "gumbel_noise",
    "permute_dims",
    "quantize_gumbel",
    "quantize_nearest",
    "random_bits",
]


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


def _nearest_impl(
    z: Tensor, codebook: Tensor, index_dtype: torch.dtype, quant_weight: float, commit_weight: float
) -> tuple[Tensor, Tensor, Tensor]:
    _check_codebook_finite(codebook)
    if z.numel() == 0:
        return (
            torch.empty_like(z),
            torch.empty(z.shape, dtype=index_dtype, device=z.device),
            torch.zeros((), dtype=_acc_dtype(z), device=z.device),
        )
    q, idx, sse = backends.select(z.device, z.dtype).nearest_forward(z, codebook, index_dtype)
    # quant_weight * mse + commit_weight * mse in one kernel; the extra `sse * 0` keeps the
    # reference's NaN (0 * inf) when exactly one weight is 0 and the error overflows
    loss = sse * ((quant_weight + commit_weight) / z.numel())
    if (quant_weight == 0.0) != (commit_weight == 0.0):
        loss = loss + sse * 0.0
    return q, idx, loss


_nearest = torch.library.custom_op("fqvae::quantize_nearest", _nearest_impl, mutates_args=())


@_nearest.register_fake
def _(z, codebook, index_dtype, quant_weight, commit_weight):
    loss = z.new_empty((), dtype=_acc_dtype(z))
    return torch.empty_like(z), z.new_empty(z.shape, dtype=index_dtype), loss


def _nearest_backward_impl(
    grad_q: Tensor | None, coef_z: Tensor, coef_c: Tensor, z: Tensor, codebook: Tensor, idx: Tensor
) -> tuple[Tensor, Tensor]:
    if z.numel() == 0:
        return torch.zeros_like(z), torch.zeros_like(codebook)
    mod = backends.select(z.device, z.dtype)
    return mod.nearest_backward(grad_q, coef_z, coef_c, z, codebook, idx)


_nearest_backward = torch.library.custom_op(
    "fqvae::quantize_nearest_backward", _nearest_backward_impl, mutates_args=()
)


@_nearest_backward.register_fake
def _(grad_q, coef_z, coef_c, z, codebook, idx):
    return torch.empty_like(z), torch.empty_like(codebook)


def _nearest_setup(ctx, inputs, output):
    z, codebook, _, ctx.quant_weight, ctx.commit_weight = inputs
    ctx.save_for_backward(z, codebook, output[1])


def _nearest_grad(ctx, grad_q, grad_idx, grad_loss, backward=_nearest_backward):
    z, codebook, idx = ctx.saved_tensors
    scale = 2.0 / max(z.numel(), 1)
    if grad_loss is None:
        coef_z = coef_c = torch.zeros((), dtype=_acc_dtype(z), device=z.device)
    else:
        grad_loss = grad_loss.to(_acc_dtype(z))
        coef_z = grad_loss * (scale * ctx.commit_weight)
        coef_c = grad_loss * (scale * ctx.quant_weight)
    gz, gc = backward(grad_q, coef_z, coef_c, z, codebook, idx)
    return gz, gc, None, None, None


_nearest.register_autograd(_nearest_grad, setup_context=_nearest_setup)
_nearest_eager = _eager_twin(
    "QuantizeNearest",
    _nearest_impl,
    _nearest_setup,
    functools.partial(_nearest_grad, backward=_nearest_backward_impl),
)


def _weight(value: float, name: str) -> float:
    """A loss weight as a Python float (numbers and NumPy scalars; not tensors or bools)."""
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def quantize_nearest(
    z: Tensor,
    codebook: Tensor,
    dim: int = -1,
    *,
    quant_weight: float = 0.0,
    commit_weight: float = 0.0,
    index_dtype: torch.dtype = torch.int64,
) -> NearestResult:
    """Quantize each element of ``z`` to its nearest codebook value (see
    :func:`fqvae.reference.quantize_nearest` for the exact semantics).

    Args:
        z: fp16/bf16/fp32/fp64 tensor of any shape; ``dim`` is the latent axis (size D).
        codebook: ``(K,)`` global or ``(D, K)`` per-dimension, ``2 <= K <= 256``, finite.
        quant_weight: weight of ``mean((sg(z) - q)^2)``, the term that trains the codebook.
        commit_weight: weight of ``mean((z - sg(q))^2)``, the term that pulls ``z`` to its code.
        index_dtype: integer dtype of the returned indices.
    Returns:
        ``NearestResult(quantized, indices, loss)``: ``quantized`` like ``z`` with a
        straight-through gradient, ``indices`` shaped like ``z``, ``loss`` a 0-d float32 tensor
        (float64 for float64 input), computed in the same kernel as the lookup.
    """
    dim = _check_quantize_args(z, codebook, dim)
    if index_dtype not in _INDEX_DTYPES:
        raise TypeError(f"index_dtype must be one of {_INDEX_DTYPES}, got {index_dtype}")
    if index_dtype == torch.uint8 and codebook.shape[-1] > 256:
        raise ValueError("index_dtype=torch.uint8 holds at most 256 codebook entries")
    weights = (_weight(quant_weight, "quant_weight"), _weight(commit_weight, "commit_weight"))
    z2, cb2, moved = _canonical(z, codebook, dim)
    op = _nearest_eager if _eager(z2, cb2) else _nearest
    q, idx, loss = op(z2, cb2, index_dtype, *weights)
    return NearestResult(_restore(q, moved, dim), _restore(idx, moved, dim), loss)


# ----------------------------------------------------------------------------- gumbel


MIN_TAU = 1e-20  # below it, distances over tau leave float32's range (all-NaN samples)


def _tau_value(tau: Tensor) -> float:
    value = float(tau)
    if not MIN_TAU <= value < math.inf:
        raise ValueError(
            f"tau must be finite and >= {MIN_TAU:g} (float32 cannot divide the distances by less), "
            f"got {value}"
        )
    return value


def _gumbel_impl(
    z: Tensor, codebook: Tensor, rng: Tensor, tau: Tensor, hard: bool, return_probs: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_codebook_finite(codebook)
    tau_value = _tau_value(tau)
    k = codebook.shape[-1]
    if z.numel() == 0:
        probs_shape = (*z.shape, k) if return_probs else (0,)
        return (
            torch.empty_like(z),
            torch.empty(z.shape, dtype=torch.int64, device=z.device),
            torch.zeros((), dtype=_acc_dtype(z), device=z.device),
            z.new_empty(probs_shape),
        )
    seed, offset = _seed_offset(rng)
    mod = backends.select(z.device, z.dtype)
    value, idx, kl, probs = mod.gumbel_forward(
        z, codebook, tau_value, seed, offset, hard, return_probs
    )
    return value, idx, kl, (probs if return_probs else z.new_empty((0,)))


_gumbel = torch.library.custom_op("fqvae::quantize_gumbel", _gumbel_impl, mutates_args=())


@_gumbel.register_fake
def _(z, codebook, rng, tau, hard, return_probs):
    k = codebook.shape[-1]
    probs = z.new_empty((*z.shape, k) if return_probs else (0,))
    return (
        torch.empty_like(z),
        z.new_empty(z.shape, dtype=torch.int64),
        z.new_empty((), dtype=_acc_dtype(z)),
        probs,
    )


def _gumbel_backward_impl(
    grad_value: Tensor | None,
    grad_kl: Tensor | None,
    grad_probs: Tensor | None,
    z: Tensor,
    codebook: Tensor,
    rng: Tensor,
    tau: Tensor,
) -> tuple[Tensor, Tensor]:
    if z.numel() == 0:
        return torch.zeros_like(z), torch.zeros_like(codebook)
    seed, offset = _seed_offset(rng)
    mod = backends.select(z.device, z.dtype)
    return mod.gumbel_backward(
        grad_value, grad_kl, grad_probs, z, codebook, float(tau), seed, offset
    )


_gumbel_backward = torch.library.custom_op(
    "fqvae::quantize_gumbel_backward", _gumbel_backward_impl, mutates_args=()
)


@_gumbel_backward.register_fake
def _(grad_value, grad_kl, grad_probs, z, codebook, rng, tau):
    return torch.empty_like(z), torch.empty_like(codebook)


def _gumbel_setup(ctx, inputs, output):
    z, codebook, rng, tau, _, return_probs = inputs
    ctx.return_probs = return_probs
    ctx.save_for_backward(z, codebook, rng, tau)


def _gumbel_grad(ctx, grad_value, grad_idx, grad_kl, grad_probs, backward=_gumbel_backward):
    z, codebook, rng, tau = ctx.saved_tensors
    grad_probs = grad_probs if ctx.return_probs else None
    gz, gc = backward(grad_value, grad_kl, grad_probs, z, codebook, rng, tau)
    return gz, gc, None, None, None, None


_gumbel.register_autograd(_gumbel_grad, setup_context=_gumbel_setup)
_gumbel_eager = _eager_twin(
    "QuantizeGumbel",
    _gumbel_impl,
    _gumbel_setup,
    functools.partial(_gumbel_grad, backward=_gumbel_backward_impl),
)


def quantize_gumbel(
    z: Tensor,
    codebook: Tensor,
    dim: int = -1,
    *,
    tau: float | Tensor = 1.0,
    seed: int | Tensor | None = None,
    offset: int = 0,
    hard: bool = False,
    return_probs: bool = False,
) -> GumbelResult:
    """Gumbel-softmax relaxed quantization (semantics: :func:`fqvae.reference.quantize_gumbel`).

    Args:
        z: fp16/bf16/fp32/fp64 tensor of any shape; ``dim`` is the latent axis (size D).
        codebook: ``(K,)`` global or ``(D, K)`` per-dimension, ``2 <= K <= 256``, finite.
        tau: temperature in [1e-20, inf) (a float, or a 0-d tensor to avoid recompiles under
            ``torch.compile`` when it changes every step).
        seed, offset: the noise stream; same inputs and ``(seed, offset)`` give the same output.
        hard: return ``c[argmax]`` with the soft value's gradient (straight-through).
        return_probs: also return the soft one-hot ``y`` (``z.shape + (K,)``, ``z.dtype``).
    Returns:
        ``GumbelResult(value, indices, kl, probs)``; ``kl`` is a 0-d float32 tensor (float64 for
        float64 input). Backward regenerates the noise; no ``N x K`` tensor is stored.
    """
    dim = _check_quantize_args(z, codebook, dim)
    if isinstance(tau, Tensor):
        if tau.numel() != 1 or not tau.dtype.is_floating_point:
            raise TypeError("a tensor tau must be a one-element floating-point tensor")
        tau_t = tau.detach().reshape(()).to("cpu", torch.float64)
    else:
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
            raise ValueError(f"tau must be a number > 0, got {tau!r}")
        tau_t = torch.tensor(float(tau), dtype=torch.float64)
    rng = _rng_tensor(seed, offset)
    z2, cb2, moved = _canonical(z, codebook, dim)
    op = _gumbel_eager if _eager(z2, cb2) else _gumbel
    value, idx, kl, probs = op(z2, cb2, rng, tau_t, hard, return_probs)
    k = codebook.shape[-1]
    out_probs = probs.reshape(*moved, k).movedim(-2, dim) if return_probs else None
    return GumbelResult(_restore(value, moved, dim), _restore(idx, moved, dim), kl, out_probs)


# ----------------------------------------------------------------------------- permute


def _permute_impl(x: Tensor, rng: Tensor) -> tuple[Tensor, Tensor]:
    seed, offset = _seed_offset(rng)
    if x.numel() == 0:
        return torch.empty_like(x), torch.empty(x.shape[:2], dtype=torch.int64, device=x.device)
    return backends.select(x.device, x.dtype).permute_forward(x, seed, offset)


_permute = torch.library.custom_op("fqvae::permute_dims", _permute_impl, mutates_args=())


@_permute.register_fake
def _(x, rng):
    return torch.empty_like(x), x.new_empty(x.shape[:2], dtype=torch.int64)


def _permute_backward_impl(grad: Tensor, perm: Tensor) -> Tensor:
    if grad.numel() == 0:
        return torch.zeros_like(grad)
    return backends.select(grad.device, grad.dtype).permute_backward(grad, perm)


_permute_backward = torch.library.custom_op(
    "fqvae::permute_dims_backward", _permute_backward_impl, mutates_args=()
)


@_permute_backward.register_fake
def _(grad, perm):
    return torch.empty_like(grad)


def _permute_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])


def _permute_grad(ctx, grad_out, grad_perm, backward=_permute_backward):
    (perm,) = ctx.saved_tensors
    return backward(grad_out.contiguous(), perm), None


_permute.register_autograd(_permute_grad, setup_context=_permute_setup)
_permute_eager = _eager_twin(
    "PermuteDims",
    _permute_impl,
    _permute_setup,
    functools.partial(_permute_grad, backward=_permute_backward_impl),
)


def permute_dims(
    x: Tensor,
    seed: int | Tensor | None = None,
    offset: int = 0,
    batch_dim: int = 0,
    dim: int = 1,
) -> Tensor:
    """Permute the batch independently for every index along ``dim``.

    ``out[b, l, ...] = x[perm_l[b], l, ...]`` where ``perm_l`` is a uniform random permutation of
    the ``batch_dim`` axis drawn for latent ``l`` (see :func:`fqvae.reference.permutations`). All
    other axes move with their slot as a unit (e.g. ``(B, L, K)`` soft one-hots move as K-vectors).
    Out of place; the gradient flows back through the inverse permutation.
    """
    if not isinstance(x, Tensor):
        raise TypeError("x must be a torch.Tensor")
    if x.dim() < 2:
        raise ValueError(
            f"x must have at least 2 dimensions (batch and latent), got shape {tuple(x.shape)}"
        )
    batch_dim = _check_dim(batch_dim, x.dim(), "batch_dim")
    dim = _check_dim(dim, x.dim(), "dim")
    if batch_dim == dim:
        raise ValueError(f"batch_dim and dim must differ, both are {dim}")
    rng = _rng_tensor(seed, offset)
    x3 = x.movedim((batch_dim, dim), (0, 1))
    moved = x3.shape
    features = math.prod(moved[2:])  # explicit: reshape(..., -1) is ambiguous for empty x
    x3 = x3.reshape(moved[0], moved[1], features).contiguous()
    out, _ = (_permute_eager if _eager(x3) else _permute)(x3, rng)
    return out.reshape(moved).movedim((0, 1), (batch_dim, dim))


# ----------------------------------------------------------------------------- the random stream


def random_bits(
    rows: int, cols: int, seed: int, offset: int = 0, device: torch.device | str = "cpu"
) -> Tensor:
    """The shared Philox stream as an int64 ``(rows, cols)`` tensor of uint32 values, computed by
    the selected backend (bit-identical across backends)."""
    device = torch.device(device)
    _rng_tensor(seed, offset)
    return backends.select(device, torch.float32).random_bits(rows, cols, seed, offset, device)


def gumbel_noise(
    rows: int, cols: int, seed: int, offset: int = 0, device: torch.device | str = "cpu"
) -> Tensor:
    """The Gumbel(0, 1) noise that :func:`quantize_gumbel` adds for element ``r``, entry ``k``."""
    from fqvae.reference import uniform_from_bits

    u = uniform_from_bits(random_bits(rows, cols, seed, offset, device))
    return -torch.log(-torch.log(u))

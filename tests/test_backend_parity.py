"""Every backend against the eager reference (``fqvae.reference``), forward and backward.

Backends that run on this machine are required to work: ``cpp`` needs the built extension and
``triton`` runs in the interpreter on CPU (fp32 only). ``cuda`` (and Triton in fp16/bf16) run on a
GPU machine, marked ``gpu``.
"""

from __future__ import annotations

import pytest
import torch

from fqvae import backends, ops, reference

HAS_CUDA = torch.cuda.is_available()
BACKENDS = [
    "reference",
    "cpp",
    "triton",
    pytest.param("cuda", marks=pytest.mark.gpu),
]
# Per-dtype tolerances for outputs (rtol, atol) and for gradients.
TOL = {
    torch.float64: (1e-9, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-2),
    torch.float16: (2e-3, 1e-3),
}


def device_for(name: str) -> torch.device:
    return torch.device("cuda" if HAS_CUDA and name in ("triton", "cuda") else "cpu")


def dtypes_for(name: str) -> list[torch.dtype]:
    dev = device_for(name)
    if name == "triton" and dev.type == "cpu":
        return [torch.float32]
    out = [torch.float32, torch.bfloat16, torch.float16]
    return out + [torch.float64] if name in ("reference", "cpp") else out


def require(name: str, dtype: torch.dtype = torch.float32) -> torch.device:
    """The device to test ``name`` on; fails (not skips) if a backend that should run is missing."""
    dev = device_for(name)
    if dtype not in dtypes_for(name):
        pytest.skip(f"{name} is not tested in {dtype} on {dev.type}")
    reason = backends.unavailable_reason(name, dev, dtype) if name != "reference" else None
    assert reason is None, f"backend {name} should run here but {reason}"
    return dev


def close(actual, expected, dtype, scale: float = 1.0):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol * scale, equal_nan=True)


def make_inputs(shape, dim, k, per_dim, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=torch.float64)
    latents = shape[dim]
    cb_shape = (latents, k) if per_dim else (k,)
    codebook = torch.randn(cb_shape, generator=g, dtype=torch.float64).sort(-1).values
    cb_dtype = torch.float32 if dtype == torch.bfloat16 else dtype  # bf16 z with fp32 codebook
    z = z.to(device, dtype).requires_grad_()
    codebook = codebook.to(device, cb_dtype).requires_grad_()
    return z, codebook


# (shape, dim, per_dim) — odd sizes, dim not last, and a non-contiguous case below.
SHAPES = [((1,), 0, False), ((13, 5), 1, True), ((6, 4, 3), 1, True), ((3, 5, 4, 2), 1, False)]
KS = [2, 10, 64, 256]


def _grads(outputs, upstream, inputs):
    total = sum((o.float() * u.float()).sum() for o, u in zip(outputs, upstream))
    return torch.autograd.grad(total, inputs, allow_unused=True)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("shape,dim,per_dim", SHAPES)
def test_nearest_matches_reference(name, dtype, k, shape, dim, per_dim):
    dev = require(name, dtype)
    z, cb = make_inputs(shape, dim, k, per_dim, dtype, dev)
    kw = dict(quant_weight=0.3, commit_weight=0.7)
    with backends.backend(name):
        out = ops.quantize_nearest(z, cb, dim, **kw)
    ref = reference.quantize_nearest(z, cb, dim, **kw)
    assert out.quantized.dtype == z.dtype and out.quantized.shape == z.shape
    assert out.indices.dtype == torch.int64
    assert torch.equal(out.indices, ref.indices)
    assert torch.equal(out.quantized, ref.quantized)
    close(out.loss, ref.loss, dtype)
    up = (torch.randn_like(z), torch.tensor(1.5, device=dev))
    with backends.backend(name):
        got = _grads((out.quantized, out.loss), up, (z, cb))
    want = _grads((ref.quantized, ref.loss), up, (z, cb))
    close(got[0], want[0], dtype)
    close(got[1], want[1], dtype, scale=k)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.uint8, torch.int16])
def test_nearest_index_dtype_and_noncontiguous(name, index_dtype):
    dev = require(name)
    z = torch.randn(9, 6, device=dev).T  # non-contiguous, latent axis 0
    cb = torch.linspace(-1, 1, 7, device=dev)
    with backends.backend(name):
        out = ops.quantize_nearest(z, cb, 0, index_dtype=index_dtype)
    ref = reference.quantize_nearest(z, cb, 0, index_dtype=index_dtype)
    assert out.indices.dtype == index_dtype
    assert torch.equal(out.indices, ref.indices) and torch.equal(out.quantized, ref.quantized)


@pytest.mark.parametrize("name", BACKENDS)
def test_nearest_ties_and_non_finite(name):
    dev = require(name)
    cb = torch.tensor([0.0, 1.0, 1.0, 2.0], device=dev)
    z = torch.tensor([0.5, 1.0, 1.5, float("nan"), float("inf"), -float("inf")], device=dev)
    with backends.backend(name):
        out = ops.quantize_nearest(z, cb, commit_weight=1.0)
    assert out.indices.tolist() == [0, 1, 1, 0, 0, 0]
    assert out.quantized[:3].tolist() == [0.0, 1.0, 1.0]
    assert torch.isnan(out.quantized[3:]).all() and torch.isnan(out.loss)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("weights", [(0.0, 0.0), (0.0, 1.0), (0.5, 0.0), (0.5, 0.25)])
def test_nearest_loss_weights_match_reference(name, weights):
    """The fused loss equals quant_weight * mse + commit_weight * mse, also when the squared
    error overflows (inf, or NaN where a zero weight meets it, as in the reference)."""
    dev = require(name)
    cb = torch.tensor([-1.0, 0.0, 1.0], device=dev)
    kw = dict(quant_weight=weights[0], commit_weight=weights[1])
    for z in (torch.linspace(-2, 2, 7, device=dev), torch.tensor([0.2, 3e19], device=dev)):
        with backends.backend(name):
            got = ops.quantize_nearest(z, cb, **kw).loss
        close(got, reference.quantize_nearest(z, cb, **kw).loss, torch.float32)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("per_dim", [False, True])
def test_nearest_non_finite_gradients_match_reference(name, per_dim):
    """Non-finite z gets a NaN gradient and leaves the codebook gradient finite."""
    dev = require(name)
    z = torch.tensor([[0.3, float("nan")], [float("inf"), -0.2], [-float("inf"), 0.9]], device=dev)
    cb = torch.tensor([[-1.0, 0.0, 1.0], [-0.5, 0.5, 1.5]], device=dev)
    cb = cb if per_dim else cb[0]
    z.requires_grad_()
    cb.requires_grad_()
    kw = dict(quant_weight=0.5, commit_weight=0.25)
    up = (torch.linspace(-1, 1, 6, device=dev).reshape(3, 2), torch.tensor(1.0, device=dev))
    with backends.backend(name):
        out = ops.quantize_nearest(z, cb, 1, **kw)
        got = _grads((out.quantized, out.loss), up, (z, cb))
    ref = reference.quantize_nearest(z, cb, 1, **kw)
    want = _grads((ref.quantized, ref.loss), up, (z, cb))
    assert torch.isnan(got[0][~torch.isfinite(z)]).all()
    assert torch.isfinite(got[1]).all()
    close(got[0], want[0], torch.float32)
    close(got[1], want[1], torch.float32)


def _assert_gumbel_matches(name, z, cb, **kw):
    """Value, KL and both gradients of backend ``name`` against the reference (fp32)."""
    z.requires_grad_()
    cb.requires_grad_()
    up = (torch.ones_like(z), torch.tensor(1.0, device=z.device))
    with backends.backend(name):
        out = ops.quantize_gumbel(z, cb, 1, **kw)
        got = _grads((out.value, out.kl), up, (z, cb))
    ref = reference.quantize_gumbel(z, cb, 1, **kw)
    want = _grads((ref.value, ref.kl), up, (z, cb))
    for actual, expected in zip((out.value, out.kl, *got), (ref.value, ref.kl, *want)):
        close(actual, expected, torch.float32)
    return ref


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("scale", [1e2, 1e4, 1e5])
def test_gumbel_far_latents_match_reference(name, scale):
    """Latents far from every code (a_k = -(z - c_k)^2 ~ -1e10): the KL and its gradient
    stay exact (a recomputed, FMA-contracted a_k - max a once overflowed exp here)."""
    dev = require(name)
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(64, 1, generator=g) * scale + 3 * scale).to(dev)
    _assert_gumbel_matches(name, z, torch.linspace(-1, 1, 8, device=dev), tau=0.5, seed=5)


@pytest.mark.parametrize("name", BACKENDS)
def test_gumbel_overflowing_logits_match_reference(name):
    """A logit that overflows to -inf drops out of the softmax instead of poisoning it."""
    dev = require(name)
    z = torch.tensor([[2e19, 0.5]], device=dev)
    cb = torch.tensor([-2e19, 1.9e19, 0.0, 1.0], device=dev)
    ref = _assert_gumbel_matches(name, z, cb, tau=0.5, seed=5)
    assert torch.isfinite(ref.value).all() and torch.isfinite(ref.kl)


@pytest.mark.parametrize("name", BACKENDS)
def test_gumbel_non_finite_matches_reference(name):
    dev = require(name)
    z = torch.tensor([[0.3, float("nan")], [float("inf"), -0.2]], device=dev)
    _assert_gumbel_matches(name, z, torch.linspace(-1, 1, 5, device=dev), tau=0.5, seed=11)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("shape,dim,per_dim", SHAPES)
@pytest.mark.parametrize("hard,return_probs", [(False, True), (True, False)])
def test_gumbel_matches_reference(name, dtype, k, shape, dim, per_dim, hard, return_probs):
    dev = require(name, dtype)
    z, cb = make_inputs(shape, dim, k, per_dim, dtype, dev, seed=1)
    kw = dict(tau=0.7, seed=2**40 + 17, offset=3, hard=hard, return_probs=return_probs)
    with backends.backend(name):
        out = ops.quantize_gumbel(z, cb, dim, **kw)
    ref = reference.quantize_gumbel(z, cb, dim, **kw)
    assert out.value.dtype == z.dtype and out.value.shape == z.shape
    assert torch.equal(out.indices, ref.indices)
    close(out.value, ref.value, dtype)
    close(out.kl, ref.kl, dtype)
    outs, refs = [out.value, out.kl], [ref.value, ref.kl]
    if return_probs:
        assert out.probs.shape == (*z.shape[:dim], *z.shape[dim:], k)[: z.dim()] + (k,)
        close(out.probs, ref.probs, dtype)
        outs.append(out.probs)
        refs.append(ref.probs)
    else:
        assert out.probs is None
    up = [torch.randn_like(o, dtype=torch.float32) for o in outs]
    with backends.backend(name):
        got = _grads(outs, up, (z, cb))
    want = _grads(refs, up, (z, cb))
    close(got[0], want[0], dtype, scale=10)
    close(got[1], want[1], dtype, scale=10 * k)


@pytest.mark.parametrize("name", BACKENDS)
def test_gumbel_same_seed_same_output(name):
    dev = require(name)
    z = torch.randn(32, 8, device=dev)
    cb = torch.randn(16, device=dev)
    with backends.backend(name):
        a = ops.quantize_gumbel(z, cb, seed=5, tau=0.3)
        b = ops.quantize_gumbel(z, cb, seed=5, tau=0.3)
        c = ops.quantize_gumbel(z, cb, seed=6, tau=0.3)
    assert torch.equal(a.value, b.value) and torch.equal(a.indices, b.indices)
    assert not torch.equal(a.value, c.value)


PERMUTE_CASES = [
    ((1, 3), 0, 1),
    ((2, 5), 0, 1),
    ((17, 5), 0, 1),
    ((8, 3, 4), 0, 1),
    ((4, 6, 5), 1, 0),
    ((257, 2, 3), 0, 1),
    ((3, 9, 2, 2), 2, 1),
]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape,batch_dim,dim", PERMUTE_CASES)
def test_permute_matches_reference(name, dtype, shape, batch_dim, dim):
    dev = require(name, dtype)
    x = torch.randn(shape, dtype=torch.float64).to(dev, dtype).requires_grad_()
    kw = dict(seed=123, offset=7, batch_dim=batch_dim, dim=dim)
    with backends.backend(name):
        out = ops.permute_dims(x, **kw)
    ref = reference.permute_dims(x, **kw)
    assert torch.equal(out, ref)
    moved = out.movedim((batch_dim, dim), (0, 1)).reshape(shape[batch_dim], shape[dim], -1)
    src = x.movedim((batch_dim, dim), (0, 1)).reshape(shape[batch_dim], shape[dim], -1)
    # every column is a permutation of the input column
    assert torch.equal(moved[..., 0].sort(0).values, src[..., 0].sort(0).values)
    up = torch.randn_like(out)
    with backends.backend(name):
        (got,) = torch.autograd.grad(out, x, up)
    (want,) = torch.autograd.grad(ref, x, up)
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(
    "rows,cols,seed,offset",
    [(5, 9, 0, 0), (3, 64, 2**40 + 123, 2**31 + 5), (70, 3, 2**63 - 1, 2**32 - 1)],
)
def test_random_bits_bit_identical(name, rows, cols, seed, offset):
    dev = require(name)
    with backends.backend(name):
        got = ops.random_bits(rows, cols, seed, offset, device=dev)
    assert torch.equal(got.cpu(), reference.random_bits(rows, cols, seed, offset))


@pytest.mark.parametrize("name", BACKENDS)
def test_permutations_bit_identical_at_large_batch(name):
    dev = require(name)
    x = torch.arange(5000 * 3, dtype=torch.float32, device=dev).reshape(5000, 3)
    with backends.backend(name):
        out = ops.permute_dims(x, seed=99)
    perm = reference.permutations(5000, 3, 99, 0)
    assert torch.equal(out.cpu(), torch.gather(x.cpu(), 0, perm))


@pytest.mark.parametrize("name", BACKENDS)
def test_opcheck(name):
    dev = require(name)
    z = torch.randn(6, 4, device=dev, requires_grad=True)
    cb = torch.randn(4, 5, device=dev, requires_grad=True)
    rng = torch.tensor([3, 1], dtype=torch.int64)
    tau = torch.tensor(0.5, dtype=torch.float64)
    x = torch.randn(7, 3, 2, device=dev, requires_grad=True)
    with backends.backend(name):
        torch.library.opcheck(
            torch.ops.fqvae.quantize_nearest.default, (z, cb, torch.int64, 0.5, 0.25)
        )
        torch.library.opcheck(
            torch.ops.fqvae.quantize_nearest.default, (z, cb[0:1], torch.int32, 0.0, 1.0)
        )
        for hard, probs in [(False, False), (True, True)]:
            torch.library.opcheck(
                torch.ops.fqvae.quantize_gumbel.default, (z, cb, rng, tau, hard, probs)
            )
        torch.library.opcheck(torch.ops.fqvae.permute_dims.default, (x, rng))
        torch.library.opcheck(torch.ops.fqvae.random_bits.default, (rng, 3, 6, torch.device(dev)))

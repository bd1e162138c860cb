"""Checks specific to the C++ CPU backend (``fqvae._C``): float64 gradchecks through the custom
ops, bitwise determinism across thread counts, mixed dtypes, exact half-precision rounding, the
bit-identical random stream, large K and odd sizes, and the baseline (non-AVX2) kernel variant.

Cross-backend parity against the reference lives in ``test_backend_parity.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fqvae import backends, ops, reference
from fqvae.backends import cpp_backend, extension


@pytest.fixture(autouse=True)
def _pin_cpp():
    reason = cpp_backend.available(torch.device("cpu"))
    assert reason is None, f"the C++ backend should run here but {reason}"
    with backends.backend("cpp"):
        yield


@pytest.fixture
def threads():
    """Set the intra-op thread count inside a test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _inputs(shape, k, per_dim, dtype=torch.float64, cb_dtype=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=torch.float64)
    cb = torch.randn((shape[-1], k) if per_dim else (k,), generator=g, dtype=torch.float64)
    return z.to(dtype), cb.sort(-1).values.to(cb_dtype or dtype)


# ----------------------------------------------------------------------------- backend module


def test_available_and_selected():
    assert cpp_backend.available(torch.device("cpu")) is None
    assert "CPU" in cpp_backend.available(torch.device("meta"))
    assert backends.select(torch.device("cpu"), torch.bfloat16) is cpp_backend
    assert extension.load().cpu_isa() in ("avx2", "generic")


# ----------------------------------------------------------------------------- gradcheck (float64)


@pytest.mark.parametrize("per_dim", [False, True])
def test_nearest_gradcheck(per_dim):
    z, cb = _inputs((5, 3), 4, per_dim)
    z.requires_grad_()
    cb.requires_grad_()
    # the codebook learns from the quantization term, z from the commitment term; the
    # straight-through value itself is piecewise constant, so each loss is checked alone
    assert torch.autograd.gradcheck(
        lambda c: ops.quantize_nearest(z.detach(), c, quant_weight=1.0).loss, (cb,)
    )
    assert torch.autograd.gradcheck(
        lambda x: ops.quantize_nearest(x, cb.detach(), commit_weight=1.0).loss, (z,)
    )


@pytest.mark.parametrize("per_dim", [False, True])
@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_gumbel_gradcheck(per_dim, tau):
    z, cb = _inputs((4, 3), 5, per_dim, seed=1)
    z.requires_grad_()
    cb.requires_grad_()

    def fn(x, c):
        out = ops.quantize_gumbel(x, c, tau=tau, seed=7, offset=2, return_probs=True)
        return out.value, out.kl, out.probs

    assert torch.autograd.gradcheck(fn, (z, cb))


def test_gumbel_gradcheck_each_output():
    z, cb = _inputs((3, 2), 4, False, seed=2)
    z.requires_grad_()
    cb.requires_grad_()
    for pick in range(3):

        def fn(x, c, pick=pick):
            out = ops.quantize_gumbel(x, c, tau=0.5, seed=3, return_probs=True)
            return (out.value, out.kl, out.probs)[pick]

        assert torch.autograd.gradcheck(fn, (z, cb))


def test_permute_gradcheck():
    x = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ops.permute_dims(t, seed=5), (x,))


# ----------------------------------------------------------------------------- determinism


def _run_all(z, cb, x):
    z = z.detach().requires_grad_()
    cb = cb.detach().requires_grad_()
    x = x.detach().requires_grad_()
    near = ops.quantize_nearest(z, cb, quant_weight=0.4, commit_weight=0.6)
    gum = ops.quantize_gumbel(z, cb, tau=0.7, seed=11, return_probs=True)
    perm = ops.permute_dims(x, seed=3)
    loss = (
        near.quantized.sum()
        + near.loss
        + (gum.value * torch.linspace(-1, 1, z.shape[-1])).sum()
        + gum.kl
        + gum.probs[..., 0].sum()
        + (perm * torch.arange(x.numel()).reshape(x.shape)).sum()
    )
    loss.backward()
    return [near.quantized, near.indices, near.loss, gum.value, gum.indices, gum.kl, gum.probs,
            perm, z.grad, cb.grad, x.grad]  # fmt: skip


@pytest.mark.parametrize("per_dim", [False, True])
def test_bitwise_identical_across_thread_counts(per_dim, threads):
    # 40_003 elements: many reduction groups and a partial last tile
    z, cb = _inputs((3077, 13), 9, per_dim, dtype=torch.float32)
    x = torch.randn(300, 7, 2)
    results = []
    for n in (1, 2, 3):
        threads(n)
        results.append(_run_all(z, cb, x))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_same_output_run_after_run():
    z, cb = _inputs((100, 8), 16, False, dtype=torch.float32)
    a = ops.quantize_gumbel(z, cb, tau=0.5, seed=9, offset=4)
    b = ops.quantize_gumbel(z, cb, tau=0.5, seed=9, offset=4)
    c = ops.quantize_gumbel(z, cb, tau=0.5, seed=9, offset=5)
    assert torch.equal(a.value, b.value) and torch.equal(a.kl, b.kl)
    assert not torch.equal(a.value, c.value)


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
    "z_dtype,cb_dtype",
    [
        (torch.bfloat16, torch.float32),
        (torch.float16, torch.bfloat16),
        (torch.float32, torch.float16),
        (torch.bfloat16, torch.bfloat16),
    ],
)
def test_mixed_dtypes(z_dtype, cb_dtype):
    z, cb = _inputs((37, 6), 12, True, dtype=z_dtype, cb_dtype=cb_dtype, seed=4)
    z.requires_grad_()
    cb.requires_grad_()
    kw = dict(quant_weight=0.5, commit_weight=0.5)
    out = ops.quantize_nearest(z, cb, **kw)
    ref = reference.quantize_nearest(z, cb, **kw)
    assert out.quantized.dtype == z_dtype and out.loss.dtype == torch.float32
    assert torch.equal(out.quantized, ref.quantized) and torch.equal(out.indices, ref.indices)
    torch.testing.assert_close(out.loss, ref.loss)
    got = torch.autograd.grad(out.quantized.float().sum() + out.loss, (z, cb))
    want = torch.autograd.grad(ref.quantized.float().sum() + ref.loss, (z, cb))
    assert got[1].dtype == cb_dtype
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)

    gout = ops.quantize_gumbel(z, cb, tau=0.8, seed=1)
    gref = reference.quantize_gumbel(z, cb, tau=0.8, seed=1)
    assert gout.value.dtype == z_dtype and torch.equal(gout.indices, gref.indices)
    torch.testing.assert_close(gout.value, gref.value, rtol=2e-2, atol=2e-2)
    got = torch.autograd.grad(gout.value.float().sum() + gout.kl, (z, cb))
    want = torch.autograd.grad(gref.value.float().sum() + gref.kl, (z, cb))
    assert got[1].dtype == cb_dtype
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=5e-2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_conversions_exact(dtype):
    """Every finite half value reads exactly; codebook values of every magnitude (subnormal,
    overflowing, halfway cases) round to the half dtype exactly as torch does."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    z = bits.view(dtype)
    z = z[torch.isfinite(z)]
    g = torch.Generator().manual_seed(0)
    mags = torch.exp(torch.empty(250).uniform_(-25, 12, generator=g))
    signs = torch.where(torch.rand(250, generator=g) < 0.5, -1.0, 1.0)
    edge = [65504.0, 65519.996, 65520.0, 2.0**-24, 1.5 * 2.0**-24, 2.0**-25]
    cb = torch.cat([mags * signs, torch.tensor(edge)]).float().sort().values
    out = ops.quantize_nearest(z, cb)
    ref = reference.quantize_nearest(z, cb)
    assert torch.equal(out.indices, ref.indices)
    assert torch.equal(out.quantized.view(torch.int16), ref.quantized.view(torch.int16))
    # and each codebook value, picked by a z right on it
    zc = cb.to(dtype)
    zc = zc[torch.isfinite(zc)]
    picked = ops.quantize_nearest(zc, cb).quantized
    assert torch.equal(picked, reference.quantize_nearest(zc, cb).quantized)


# ----------------------------------------------------------------------------- random stream


@pytest.mark.parametrize(
    "rows,cols,seed,offset",
    [(1, 1, 0, 0), (17, 63, 5, 1), (3, 1027, 2**64 - 1, 2**32 - 1), (1000, 7, 2**33 + 3, 9)],
)
def test_random_bits_match_reference(rows, cols, seed, offset):
    got = cpp_backend.random_bits(rows, cols, seed, offset)
    assert got.dtype == torch.int64
    assert torch.equal(got, reference.random_bits(rows, cols, seed, offset))


@pytest.mark.parametrize("batch,columns", [(1, 1), (2, 3), (33, 5), (4099, 2)])
def test_permutations_match_reference(batch, columns):
    x = torch.arange(batch * columns, dtype=torch.float32).reshape(batch, columns, 1)
    out, perm = cpp_backend.permute_forward(x, 2**62 + 1, 77)
    want = reference.permutations(batch, columns, 2**62 + 1, 77)
    assert torch.equal(perm, want)
    assert torch.equal(out, torch.gather(x, 0, want[..., None]))
    grad = torch.randn(batch, columns, 1)
    gx = cpp_backend.permute_backward(grad, perm)
    assert torch.equal(gx, torch.zeros_like(grad).scatter_(0, want[..., None], grad))


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32, torch.bool, torch.complex64])
def test_permute_moves_any_element_size(dtype):
    x = (torch.arange(5 * 3 * 4) % 2).to(dtype).reshape(5, 3, 4)
    out, perm = cpp_backend.permute_forward(x, 1, 0)
    assert torch.equal(out, torch.gather(x, 0, perm[..., None].expand(x.shape)))


def test_gumbel_noise_matches_reference_closely():
    """The float32 noise comes from the kernels' own log; it is within a few ulp of torch's."""
    z = torch.zeros(4096, 1)
    cb = torch.zeros(64)
    out = ops.quantize_gumbel(z, cb, tau=1.0, seed=123, offset=5, return_probs=True)
    noise = reference.gumbel_noise(4096, 64, 123, 5)
    # all logits are equal, so y = softmax(noise) and the index is the noise argmax
    assert torch.equal(out.indices.flatten(), noise.argmax(-1))
    torch.testing.assert_close(out.probs.reshape(4096, 64), torch.softmax(noise, -1))
    torch.testing.assert_close(out.kl, torch.zeros((), dtype=torch.float32), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- sizes and edges


@pytest.mark.parametrize(
    "shape,k,per_dim,index_dtype",
    [
        ((1, 1), 256, False, torch.uint8),
        ((19, 7), 256, True, torch.int16),
        ((3, 129), 3, True, torch.int32),
        ((1000, 1), 2, False, torch.int64),
    ],
)
def test_large_k_and_odd_sizes(shape, k, per_dim, index_dtype):
    z, cb = _inputs(shape, k, per_dim, dtype=torch.float32, seed=5)
    z.requires_grad_()
    cb.requires_grad_()
    kw = dict(quant_weight=1.0, commit_weight=1.0, index_dtype=index_dtype)
    out = ops.quantize_nearest(z, cb, **kw)
    ref = reference.quantize_nearest(z, cb, **kw)
    assert torch.equal(out.indices, ref.indices) and torch.equal(out.quantized, ref.quantized)
    got = torch.autograd.grad(out.loss, (z, cb))
    want = torch.autograd.grad(ref.loss, (z, cb))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    gout = ops.quantize_gumbel(z, cb, tau=0.4, seed=3, hard=True)
    gref = reference.quantize_gumbel(z, cb, tau=0.4, seed=3, hard=True)
    assert torch.equal(gout.indices, gref.indices)
    torch.testing.assert_close(gout.value, gref.value)
    torch.testing.assert_close(gout.kl, gref.kl)
    got = torch.autograd.grad(gout.value.sum() + gout.kl, (z, cb))
    want = torch.autograd.grad(gref.value.sum() + gref.kl, (z, cb))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_gumbel_non_finite_inputs_propagate():
    z = torch.tensor([[0.3, float("nan")], [float("inf"), -1.0]])
    cb = torch.tensor([-1.0, 0.0, 1.0])
    out = ops.quantize_gumbel(z, cb, seed=1)
    ref = reference.quantize_gumbel(z, cb, seed=1)
    assert torch.equal(out.indices, ref.indices)
    torch.testing.assert_close(out.value, ref.value, equal_nan=True)
    assert torch.isnan(out.kl) and torch.isnan(ref.kl)


def test_nearest_codebook_gradient_ignores_other_entries():
    """gc[row, k] sums (q - z) over the elements that picked k (the contract), so an entry that
    no element picked gets exactly zero."""
    z = torch.tensor([[0.1, 2.2], [0.2, 1.9]])
    cb = torch.tensor([[0.0, 5.0, 9.0], [2.0, 7.0, 8.0]], requires_grad=True)
    out = ops.quantize_nearest(z, cb, quant_weight=1.0)
    (gc,) = torch.autograd.grad(out.loss, cb)
    want = torch.tensor([[2 * (-0.1 - 0.2), 0.0, 0.0], [2 * (-0.2 + 0.1), 0.0, 0.0]]) / 4
    torch.testing.assert_close(gc, want)


def test_bad_indices_and_permutations_raise():
    z = torch.zeros(2, 3)
    cb = torch.zeros(1, 4)
    zero = torch.zeros((), dtype=torch.float32)
    with pytest.raises(RuntimeError, match="idx"):
        cpp_backend.nearest_backward(None, zero, zero, z, cb, torch.full((2, 3), 4))
    with pytest.raises(RuntimeError, match="perm"):
        cpp_backend.permute_backward(torch.zeros(2, 1, 1), torch.tensor([[0], [2]]))


# ----------------------------------------------------------------------------- baseline variant

_GENERIC_SCRIPT = textwrap.dedent(
    """
    import torch
    from fqvae import backends, ops, reference
    from fqvae.backends import cpp_backend, extension

    assert extension.load().cpu_isa() == "generic"
    g = torch.Generator().manual_seed(0)
    for dtype, cb_dtype in [(torch.float32,) * 2, (torch.float16, torch.float32),
                            (torch.bfloat16, torch.float32), (torch.float64,) * 2]:
        z = torch.randn(53, 7, generator=g).to(dtype).requires_grad_()
        cb = torch.randn(7, 10, generator=g).sort(-1).values.to(cb_dtype).requires_grad_()
        tol = dict(rtol=2e-2, atol=2e-2)
        with backends.backend("cpp"):
            out = ops.quantize_nearest(z, cb, quant_weight=0.5, commit_weight=0.5)
            gum = ops.quantize_gumbel(z, cb, tau=0.6, seed=4, return_probs=True)
            perm = ops.permute_dims(z, seed=2)
        ref = reference.quantize_nearest(z, cb, quant_weight=0.5, commit_weight=0.5)
        gref = reference.quantize_gumbel(z, cb, tau=0.6, seed=4, return_probs=True)
        assert torch.equal(out.quantized, ref.quantized) and torch.equal(out.indices, ref.indices)
        assert torch.equal(gum.indices, gref.indices)
        assert torch.equal(perm, reference.permute_dims(z, seed=2))
        torch.testing.assert_close(gum.value, gref.value, **tol)
        torch.testing.assert_close(gum.probs, gref.probs, **tol)
        torch.testing.assert_close(gum.kl, gref.kl, **tol)
        with backends.backend("cpp"):
            got = torch.autograd.grad(out.loss + gum.value.float().sum() + gum.kl, (z, cb))
        want = torch.autograd.grad(ref.loss + gref.value.float().sum() + gref.kl, (z, cb))
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=2e-2, atol=5e-2)
    assert torch.equal(cpp_backend.random_bits(9, 37, 3, 1), reference.random_bits(9, 37, 3, 1))
    print("ok")
    """
)


def test_generic_variant_matches_reference(tmp_path):
    """The baseline (SSE2 / NEON) kernels, forced with FQVAE_CPU_GENERIC=1 in a fresh process."""
    env = {**os.environ, "FQVAE_CPU_GENERIC": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _GENERIC_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # import the installed fqvae, not the source tree
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]

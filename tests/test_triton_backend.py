"""The Triton backend against the reference backend, on the kernel contract's canonical layouts.

On a CPU-only machine the kernels run in the Triton interpreter (fp32, small shapes); the tests
marked ``gpu`` run them compiled, in fp16/bf16/fp32 and at sizes with many programs.
"""

from __future__ import annotations

import os

import pytest
import torch

from fqvae import reference
from fqvae.backends import reference_backend as ref
from fqvae.backends import triton_backend as tri

HAS_CUDA = torch.cuda.is_available()
DEV = torch.device("cuda" if HAS_CUDA else "cpu")
TOL = {torch.float32: (1e-4, 1e-5), torch.bfloat16: (1.6e-2, 1e-2), torch.float16: (2e-3, 1e-3)}
GPU_DTYPES = [
    pytest.param(torch.float16, marks=pytest.mark.gpu),
    pytest.param(torch.bfloat16, marks=pytest.mark.gpu),
]

pytestmark = pytest.mark.skipif(
    tri.available(DEV) is not None, reason=f"triton backend unavailable: {tri.available(DEV)}"
)


@pytest.fixture(scope="module")
def kernels():
    return tri._kernels()


def close(actual, expected, dtype, scale=1.0):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol * scale, equal_nan=True)


def inputs(m, d, k, per_dim, dtype=torch.float32, seed=0):
    """``(M, D)`` z in ``dtype`` and a sorted ``(D, K)`` / ``(1, K)`` fp32-or-``dtype`` codebook."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(m, d, generator=g).to(DEV, dtype)
    cb = torch.randn(d if per_dim else 1, k, generator=g).sort(-1).values
    return z, cb.to(DEV, torch.float32 if dtype == torch.bfloat16 else dtype)


def test_available():
    assert tri.available(torch.device("meta")) is not None
    if not HAS_CUDA:
        assert tri.available(torch.device("cpu")) is None
        os.environ["TRITON_INTERPRET"] = "0"
        try:
            assert "interpreter" in tri.available(torch.device("cpu"))
        finally:
            os.environ["TRITON_INTERPRET"] = "1"


@pytest.mark.parametrize(
    "rows,cols,seed,offset",
    [(3, 5, 0, 0), (9, 37, 2**40 + 123, 2**31 + 5), (70, 3, 2**63 - 1, 2**32 - 1)],
)
def test_random_bits_bit_identical(rows, cols, seed, offset):
    got = tri.random_bits(rows, cols, seed, offset, DEV)
    assert got.dtype == torch.int64
    assert torch.equal(got.cpu(), reference.random_bits(rows, cols, seed, offset))


@pytest.mark.parametrize("batch,cols,feats", [(1, 2, 1), (3, 4, 2), (37, 3, 5), (100, 2, 1)])
def test_permute_bit_identical(batch, cols, feats):
    x = torch.randn(batch, cols, feats, device=DEV)
    out, perm = tri.permute_forward(x, 2**63 - 5, 2**32 - 1)
    want = reference.permutations(batch, cols, 2**63 - 5, 2**32 - 1)
    assert perm.dtype == torch.int64 and perm.is_contiguous()
    assert torch.equal(perm.cpu(), want)
    assert torch.equal(out, torch.gather(x, 0, perm[..., None].expand_as(x)))
    grad = torch.randn_like(x)
    assert torch.equal(tri.permute_backward(grad, perm), ref.permute_backward(grad, perm))


def test_permute_argsort_fallback_matches_in_kernel_sort(kernels, monkeypatch):
    x = torch.randn(40, 3, 2, device=DEV)
    in_kernel = tri.permute_forward(x, 11, 4)
    monkeypatch.setattr(kernels.permute, "MAX_SORT_BATCH", 16)
    fallback = tri.permute_forward(x, 11, 4)
    assert torch.equal(in_kernel[1], fallback[1]) and torch.equal(in_kernel[0], fallback[0])
    assert torch.equal(fallback[1].cpu(), reference.permutations(40, 3, 11, 4))


@pytest.mark.parametrize("dtype", [torch.float32, *GPU_DTYPES])
@pytest.mark.parametrize("m,d,k,per_dim", [(13, 5, 10, True), (7, 3, 3, False), (5, 2, 256, True)])
def test_nearest(dtype, m, d, k, per_dim):
    z, cb = inputs(m, d, k, per_dim, dtype)
    q, idx, sse = tri.nearest_forward(z, cb, torch.int64)
    q_ref, idx_ref, sse_ref = ref.nearest_forward(z, cb, torch.int64)
    assert q.dtype == z.dtype and idx.dtype == torch.int64
    assert torch.equal(idx, idx_ref) and torch.equal(q, q_ref)
    close(sse, sse_ref, dtype)
    coef_z, coef_c = torch.tensor(0.3, device=DEV), torch.tensor(0.7, device=DEV)
    for grad_q in (torch.randn_like(z), None):
        gz, gc = tri.nearest_backward(grad_q, coef_z, coef_c, z, cb, idx)
        gz_ref, gc_ref = ref.nearest_backward(grad_q, coef_z, coef_c, z, cb, idx)
        assert gz.dtype == z.dtype and gc.dtype == cb.dtype and gc.shape == cb.shape
        close(gz, gz_ref, dtype)
        close(gc, gc_ref, dtype, scale=k)


@pytest.mark.parametrize("index_dtype", [torch.uint8, torch.int16, torch.int32])
def test_nearest_index_dtypes(index_dtype):
    z, cb = inputs(6, 4, 200, False)
    _, idx, _ = tri.nearest_forward(z, cb, index_dtype)
    assert idx.dtype == index_dtype
    assert torch.equal(idx.long(), ref.nearest_forward(z, cb, torch.int64)[1])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy overflow in the interpreter
def test_nearest_ties_and_non_finite():
    cb = torch.tensor([[0.0, 1.0, 1.0, 2.0, 3.0]], device=DEV)
    z = torch.tensor([[0.5, 1.0, 1.5, float("nan"), float("inf"), -float("inf"), 3e19]], device=DEV)
    q, idx, sse = tri.nearest_forward(z.T.contiguous(), cb, torch.int64)
    assert idx.flatten().tolist() == [0, 1, 1, 0, 0, 0, 4]  # 3e19: above the range, the last
    assert q.flatten()[:3].tolist() == [0.0, 1.0, 1.0]
    assert torch.isnan(q.flatten()[3:6]).all() and torch.isnan(sse)


@pytest.mark.parametrize("dtype", [torch.float32, *GPU_DTYPES])
@pytest.mark.parametrize(
    "m,d,k,per_dim,hard,probs",
    [(13, 5, 10, True, False, True), (9, 1, 3, False, True, False), (4, 3, 64, False, True, True)],
)
def test_gumbel(dtype, m, d, k, per_dim, hard, probs):
    z, cb = inputs(m, d, k, per_dim, dtype, seed=1)
    args = (0.7, 2**40 + 17, 3, hard, probs)
    value, idx, kl, p = tri.gumbel_forward(z, cb, *args)
    value_ref, idx_ref, kl_ref, p_ref = ref.gumbel_forward(z, cb, *args)
    assert value.dtype == z.dtype and idx.dtype == torch.int64 and kl.shape == ()
    assert torch.equal(idx, idx_ref)
    close(value, value_ref, dtype)
    close(kl, kl_ref, dtype)
    if probs:
        assert p.shape == (m, d, k) and p.dtype == z.dtype
        close(p, p_ref, dtype)
    else:
        assert p is None
    grads = (torch.randn_like(z), torch.tensor(1.3, device=DEV), torch.randn(m, d, k, device=DEV))
    for keep in [(0, 1, 2), (0,), (1,), (2,)]:
        g = [x if i in keep else None for i, x in enumerate(grads)]
        g[2] = None if g[2] is None else g[2].to(dtype)
        gz, gc = tri.gumbel_backward(*g, z, cb, 0.7, 5, 1)
        gz_ref, gc_ref = ref.gumbel_backward(*g, z, cb, 0.7, 5, 1)
        assert gz.dtype == z.dtype and gc.dtype == cb.dtype and gc.shape == cb.shape
        close(gz, gz_ref, dtype, scale=10)
        close(gc, gc_ref, dtype, scale=10 * k)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_gumbel_non_finite():
    z = torch.tensor([[0.5], [float("nan")], [float("inf")]], device=DEV)
    cb = torch.tensor([[-1.0, 0.0, 1.0]], device=DEV)
    value, idx, kl, probs = tri.gumbel_forward(z, cb, 0.5, 1, 0, True, True)
    assert idx.flatten().tolist()[1:] == [0, 0]
    assert torch.isnan(value[1:]).all() and torch.isnan(kl) and torch.isnan(probs[1:]).all()
    assert torch.isfinite(value[0]).all() and torch.isfinite(probs[0]).all()


def _all_outputs(z, cb):
    """Every forward output and gradient of the three operators, for the determinism test."""
    coef = torch.tensor(0.5, device=DEV)
    q, idx, sse = tri.nearest_forward(z, cb, torch.int64)
    out = [q, idx, sse, *tri.nearest_backward(torch.ones_like(z), coef, coef, z, cb, idx)]
    value, gidx, kl, probs = tri.gumbel_forward(z, cb, 0.5, 7, 1, False, True)
    gp = torch.ones_like(probs)
    out += [value, gidx, kl, probs, *tri.gumbel_backward(z, coef, gp, z, cb, 0.5, 7, 1)]
    x = z.reshape(z.shape[0], -1, 1)
    perm_out, perm = tri.permute_forward(x, 3, 0)
    return out + [perm_out, perm, tri.permute_backward(x, perm)]


@pytest.mark.parametrize("per_dim", [True, False])
def test_deterministic(kernels, monkeypatch, per_dim):
    """Bitwise-equal outputs run after run, with many programs and row blocks per program."""
    for module in (kernels.nearest, kernels.gumbel):
        monkeypatch.setattr(module, "tile", lambda m, d, k_pad, per_thread: (2, 4, 1))
    z, cb = inputs(16, 3, 6, per_dim)
    first = _all_outputs(z, cb)
    assert all(torch.equal(a, b) for a, b in zip(first, _all_outputs(z, cb)))
    # Fewer partial sums (more row blocks per program) change only the summation order.
    monkeypatch.setattr(kernels.nearest, "MAX_PARTIALS", 2)
    monkeypatch.setattr(kernels.gumbel, "MAX_PARTIALS", 2)
    for a, b in zip(first, _all_outputs(z, cb)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_deterministic_large_gpu(dtype):
    z, cb = inputs(8192, 24, 37, True, dtype)
    first = _all_outputs(z, cb)
    assert all(torch.equal(a, b) for a, b in zip(first, _all_outputs(z, cb)))


@pytest.mark.gpu
def test_permute_large_gpu():
    for batch, cols, feats in [(4096, 10, 1), (4095, 3, 64), (4097, 2, 3), (20000, 4, 1)]:
        x = torch.randn(batch, cols, feats, device=DEV)
        out, perm = tri.permute_forward(x, 99, 1)
        assert torch.equal(perm.cpu(), reference.permutations(batch, cols, 99, 1))
        assert torch.equal(out, torch.gather(x, 0, perm[..., None].expand_as(x)))
        assert torch.equal(tri.permute_backward(out, perm), x)

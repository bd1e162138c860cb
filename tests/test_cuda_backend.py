"""The CUDA C++ backend against the reference, forward and backward (needs a GPU and an
``fqvae._C`` built with its CUDA kernels)."""

from __future__ import annotations

import pytest
import torch

from fqvae import backends, ops, reference
from fqvae.backends import cuda_backend as cb
from fqvae.backends import reference_backend as rb

pytestmark = pytest.mark.gpu

DEV = torch.device("cuda")
FLOATS = (torch.float32, torch.bfloat16, torch.float16)
SHAPES = ((1, 1), (7, 3), (33, 10), (4096, 64), (1000, 300))
KS = (2, 10, 64, 256)


@pytest.fixture(autouse=True)
def _needs_backend(request):
    if request.node.name.startswith("test_available"):
        return
    reason = cb.available(DEV)
    if reason is not None:
        pytest.skip(f"cuda backend unavailable: {reason}")


def test_available():
    assert cb.available(DEV) is None
    assert cb.available(torch.device("cpu")) is not None


def _inputs(shape, k, per_dim, dtype, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = (torch.randn(shape, generator=g) * 1.5).to(dtype).to(DEV)
    rows = shape[1] if per_dim else 1
    codebook = torch.randn(rows, k, generator=g).sort(-1).values.to(dtype).to(DEV)
    return z, codebook


def _close(actual, expected, rtol, atol):
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- nearest


def _assert_q(q, rq):
    # The reference forms q as z + (q - z) (straight-through), which may be 1 ulp off the
    # codebook value in float32; codebooks in z's 16-bit dtype round back exactly.
    assert q.dtype == rq.dtype
    if q.dtype == torch.float32:
        torch.testing.assert_close(q, rq)
    else:
        assert torch.equal(q, rq)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("per_dim", (False, True))
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("shape", SHAPES)
def test_nearest_forward(shape, k, per_dim, dtype):
    z, codebook = _inputs(shape, k, per_dim, dtype)
    q, idx, sse = cb.nearest_forward(z, codebook, torch.int64)
    rq, ridx, rsse = rb.nearest_forward(z, codebook, torch.int64)
    assert q.dtype == z.dtype and idx.dtype == torch.int64 and sse.dtype == torch.float32
    assert torch.equal(idx, ridx)
    _assert_q(q, rq)
    _close(sse, rsse, 1e-5, 1e-6)


@pytest.mark.parametrize("index_dtype", (torch.uint8, torch.int16, torch.int32, torch.int64))
@pytest.mark.parametrize("per_dim", (False, True))
def test_nearest_index_dtypes_and_odd_sizes(index_dtype, per_dim):
    # 1001 * 7 elements: not a multiple of any vector width; a sliced z is not 16-byte aligned.
    base, codebook = _inputs((1002, 7), 17, per_dim, torch.float16)
    z = base.reshape(-1)[7:].reshape(1001, 7)
    q, idx, sse = cb.nearest_forward(z, codebook, index_dtype)
    rq, ridx, rsse = rb.nearest_forward(z, codebook, index_dtype)
    assert idx.dtype == index_dtype
    assert torch.equal(idx, ridx)
    _assert_q(q, rq)
    _close(sse, rsse, 1e-5, 1e-6)


@pytest.mark.parametrize("per_dim", (False, True))
def test_nearest_ties_and_non_finite(per_dim):
    codebook = torch.tensor([[-1.0, 0.0, 0.0, 1.0, 1.0, 3.0]], device=DEV)
    if per_dim:
        codebook = codebook.expand(4, -1).contiguous()
    values = [0.5, 2.0, 0.0, 1.0, float("nan"), float("inf"), -float("inf"), -0.5] * 8
    z = torch.tensor(values, device=DEV).reshape(-1, 4)
    q, idx, sse = cb.nearest_forward(z, codebook, torch.int64)
    rq, ridx, rsse = rb.nearest_forward(z, codebook, torch.int64)
    assert torch.equal(idx, ridx)
    torch.testing.assert_close(q, rq, rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(sse) and torch.isnan(rsse)
    assert idx.flatten()[:4].tolist() == [1, 3, 1, 3]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("per_dim", (False, True))
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("shape", ((7, 3), (4096, 64), (1000, 300)))
@pytest.mark.parametrize("with_grad", (False, True))
def test_nearest_backward(shape, k, per_dim, dtype, with_grad):
    z, codebook = _inputs(shape, k, per_dim, dtype, seed=1)
    _, idx, _ = rb.nearest_forward(z, codebook, torch.int32)
    grad_q = torch.randn(shape, device=DEV).to(dtype) if with_grad else None
    coef_z = torch.tensor(0.7, device=DEV)
    coef_c = torch.tensor(-1.3, device=DEV)
    gz, gc = cb.nearest_backward(grad_q, coef_z, coef_c, z, codebook, idx)
    rgz, rgc = rb.nearest_backward(grad_q, coef_z, coef_c, z, codebook, idx)
    assert gz.dtype == z.dtype and gc.dtype == codebook.dtype and gc.shape == codebook.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    _close(gz, rgz, tol, tol)
    scale = rgc.float().abs().max().item() + 1.0
    _close(gc, rgc, tol, 1e-4 * scale if dtype == torch.float32 else 1e-2 * scale)


def test_nearest_backward_expanded_grad():
    z, codebook = _inputs((64, 8), 10, True, torch.float32)
    _, idx, _ = rb.nearest_forward(z, codebook, torch.int64)
    grad_q = torch.ones((), device=DEV).expand(64, 8)
    coef = torch.tensor(0.5, device=DEV)
    gz, gc = cb.nearest_backward(grad_q, coef, coef, z, codebook, idx)
    rgz, rgc = rb.nearest_backward(grad_q, coef, coef, z, codebook, idx)
    _close(gz, rgz, 1e-6, 1e-6)
    _close(gc, rgc, 1e-5, 1e-5)


# ----------------------------------------------------------------------------- gumbel


def _gumbel_tols(dtype):
    return (2e-5, 2e-5) if dtype == torch.float32 else (2e-2, 2e-2)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("per_dim", (False, True))
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("shape", ((7, 3), (512, 64), (300, 300)))
@pytest.mark.parametrize("hard", (False, True))
def test_gumbel_forward(shape, k, per_dim, dtype, hard):
    z, codebook = _inputs(shape, k, per_dim, dtype, seed=2)
    seed, offset, tau = 1234567890123, 17, 0.7
    value, idx, kl, probs = cb.gumbel_forward(z, codebook, tau, seed, offset, hard, True)
    rvalue, ridx, rkl, rprobs = rb.gumbel_forward(z, codebook, tau, seed, offset, hard, True)
    assert value.dtype == z.dtype and idx.dtype == torch.int64 and kl.dtype == torch.float32
    assert probs.shape == (*shape, k) and probs.dtype == z.dtype
    same = idx == ridx
    assert (~same).sum().item() <= max(1, idx.numel() // 10000)  # near-ties only
    rtol, atol = _gumbel_tols(dtype)
    _close(value[same], rvalue[same], rtol, atol)
    _close(probs, rprobs, rtol, atol)
    _close(kl, rkl, 1e-5, 1e-6)
    _, _, _, none = cb.gumbel_forward(z, codebook, tau, seed, offset, hard, False)
    assert none is None


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("per_dim", (False, True))
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("grads", ("value", "kl", "probs", "value+kl", "value+kl+probs", "none"))
def test_gumbel_backward(k, per_dim, dtype, grads):
    shape = (96, 12)
    z, codebook = _inputs(shape, k, per_dim, dtype, seed=3)
    seed, offset, tau = 99, 3, 0.5
    g = torch.Generator(device="cpu").manual_seed(4)
    gv = torch.randn(shape, generator=g).to(dtype).to(DEV) if "value" in grads else None
    gkl = torch.tensor(2.5, device=DEV) if "kl" in grads else None
    gp = torch.randn(*shape, k, generator=g).to(dtype).to(DEV) if "probs" in grads else None
    gz, gc = cb.gumbel_backward(gv, gkl, gp, z, codebook, tau, seed, offset)
    rgz, rgc = rb.gumbel_backward(gv, gkl, gp, z, codebook, tau, seed, offset)
    assert gz.dtype == z.dtype and gc.dtype == codebook.dtype and gc.shape == codebook.shape
    rtol, atol = (1e-4, 1e-5) if dtype == torch.float32 else (2e-2, 2e-2)
    scale = rgz.float().abs().max().item() + 1e-3
    _close(gz, rgz, rtol, atol * scale)
    scale = rgc.float().abs().max().item() + 1e-3
    _close(gc, rgc, rtol, atol * scale)


def test_gumbel_large():
    z, codebook = _inputs((1 << 14, 64), 16, False, torch.float32, seed=5)
    value, idx, kl, _ = cb.gumbel_forward(z, codebook, 1.0, 5, 0, False, False)
    rvalue, ridx, rkl, _ = rb.gumbel_forward(z, codebook, 1.0, 5, 0, False, False)
    assert (idx != ridx).float().mean().item() < 1e-4
    _close(value, rvalue, 2e-5, 2e-5)
    _close(kl, rkl, 1e-5, 1e-6)
    gz, gc = cb.gumbel_backward(torch.ones_like(z), None, None, z, codebook, 1.0, 5, 0)
    rgz, rgc = rb.gumbel_backward(torch.ones_like(z), None, None, z, codebook, 1.0, 5, 0)
    _close(gz, rgz, 1e-4, 1e-5)
    _close(gc, rgc, 1e-4, 1e-3)


# ----------------------------------------------------------------------------- random stream


@pytest.mark.parametrize(
    "rows,cols,seed,offset",
    ((1, 1, 0, 0), (5, 7, 1, 2), (300, 4099, 2**63 + 12345, 2**32 - 1), (4, 256, 2**40, 7)),
)
def test_random_bits_bit_identical(rows, cols, seed, offset):
    bits = cb.random_bits(rows, cols, seed, offset, DEV)
    assert bits.dtype == torch.int64 and bits.device.type == "cuda"
    assert torch.equal(bits.cpu(), reference.random_bits(rows, cols, seed, offset))


# ----------------------------------------------------------------------------- permute


@pytest.mark.parametrize("batch", (1, 2, 7, 100, 1024, 4096, 8192, 10000))
@pytest.mark.parametrize(
    "features,dtype", ((1, torch.float32), (3, torch.float16), (16, torch.bfloat16))
)
def test_permute_bit_identical(batch, features, dtype):
    columns = 5
    x = torch.randn(batch, columns, features).to(dtype).to(DEV)
    out, perm = cb.permute_forward(x, 2024, 9)
    expected = reference.permutations(batch, columns, 2024, 9, DEV)
    assert perm.dtype == torch.int64 and torch.equal(perm, expected)
    assert torch.equal(out, rb.permute_forward(x, 2024, 9)[0])
    grad = torch.randn_like(x)
    assert torch.equal(cb.permute_backward(grad, perm), rb.permute_backward(grad, perm))


def test_permute_many_columns_odd_rows():
    x = torch.arange(64 * 700 * 3, dtype=torch.int8, device=DEV).reshape(64, 700, 3)
    out, perm = cb.permute_forward(x, 1, 0)
    assert torch.equal(perm, reference.permutations(64, 700, 1, 0, DEV))
    assert torch.equal(out, rb.permute_forward(x, 1, 0)[0])
    assert torch.equal(cb.permute_backward(out, perm), x)


# ----------------------------------------------------------------------------- determinism


def test_deterministic():
    z, codebook = _inputs((20000, 32), 64, True, torch.float32, seed=6)
    first = cb.nearest_forward(z, codebook, torch.int64)
    idx = first[1]
    coef = torch.tensor(0.3, device=DEV)
    gz = torch.randn_like(z)
    for _ in range(3):
        again = cb.nearest_forward(z, codebook, torch.int64)
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        b1 = cb.nearest_backward(gz, coef, coef, z, codebook, idx)
        b2 = cb.nearest_backward(gz, coef, coef, z, codebook, idx)
        assert all(torch.equal(a, b) for a, b in zip(b1, b2))
        f1 = cb.gumbel_forward(z, codebook, 0.9, 3, 1, True, True)
        f2 = cb.gumbel_forward(z, codebook, 0.9, 3, 1, True, True)
        assert all(torch.equal(a, b) for a, b in zip(f1, f2))
        g1 = cb.gumbel_backward(gz, coef, None, z, codebook, 0.9, 3, 1)
        g2 = cb.gumbel_backward(gz, coef, None, z, codebook, 0.9, 3, 1)
        assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_side_stream_matches_default_stream():
    """Kernels run on the caller's current stream, so work queued there is ordered."""
    z, codebook = _inputs((4096, 16), 64, False, torch.float32, seed=7)
    want_near = cb.nearest_forward(z, codebook, torch.int64)
    want_gumbel = cb.gumbel_forward(z, codebook, 0.7, 11, 0, False, False)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        z2 = z * 1.0  # produced on the side stream, consumed there without a sync
        near = cb.nearest_forward(z2, codebook, torch.int64)
        gumbel = cb.gumbel_forward(z2, codebook, 0.7, 11, 0, False, False)
    torch.cuda.current_stream().wait_stream(side)
    assert all(torch.equal(a, b) for a, b in zip(near, want_near))
    assert all(torch.equal(a, b) for a, b in zip(gumbel[:3], want_gumbel[:3]))


# ----------------------------------------------------------------------------- through the ops


def test_ops_autograd_matches_reference():
    g = torch.Generator(device="cpu").manual_seed(7)
    z = torch.randn(16, 6, 5, generator=g).to(DEV).requires_grad_()
    codebook = torch.randn(6, 12, generator=g).to(DEV).requires_grad_()
    with backends.backend("cuda"):
        out = ops.quantize_nearest(z, codebook, dim=1, quant_weight=0.5, commit_weight=0.25)
        gout = ops.quantize_gumbel(z, codebook, dim=1, tau=0.8, seed=11, return_probs=True)
    ref = reference.quantize_nearest(z, codebook, 1, quant_weight=0.5, commit_weight=0.25)
    rg = reference.quantize_gumbel(z, codebook, 1, tau=0.8, seed=11, return_probs=True)
    assert torch.equal(out.indices, ref.indices)
    _close(out.loss, ref.loss, 1e-5, 1e-6)
    loss = (out.quantized * 1.5).sum() + out.loss + gout.value.sum() + gout.kl
    loss = loss + (gout.probs * 0.1).sum()
    rloss = (ref.quantized * 1.5).sum() + ref.loss + rg.value.sum() + rg.kl + (rg.probs * 0.1).sum()
    grads = torch.autograd.grad(loss, (z, codebook))
    rgrads = torch.autograd.grad(rloss, (z, codebook))
    for a, b in zip(grads, rgrads):
        _close(a, b, 1e-4, 1e-5)

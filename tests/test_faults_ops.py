"""Faults of the ops and the layer: every finite input gets the right code, and an index or a
temperature outside the defined range is refused with a clear error, on every backend."""

from __future__ import annotations

import pytest
import torch

import fqvae

# ----------------------------------------------------------------------------- the layer

INDICES = [("global", [[-1]]), ("global", [[10]]), ("per_dim", [[-1]]), ("per_dim", [[10]])]


@pytest.mark.parametrize(("codebook", "index"), INDICES)
def test_indices_out_of_range_raise(codebook, index):
    layer = fqvae.ScalarQuantize(10, codebook=codebook, num_latents=1)
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 10\)"):
        layer.indices_to_codes(torch.tensor(index))


# ----------------------------------------------------------------------------- huge latents

HUGE = [2e7, -2e7, 1e30, -3e38, 6e4, -6e4, 0.3, 1.0]


@pytest.mark.parametrize("name", fqvae.available_backends("cpu"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_huge_finite_latents_pick_the_end_value(name, dtype):
    if reason := fqvae.backends.unavailable_reason(name, torch.device("cpu"), dtype):
        pytest.skip(f"{name}: {reason}")
    values = [v for v in HUGE if abs(v) <= torch.finfo(dtype).max]
    cb_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    glob = torch.linspace(-1, 1, 10, dtype=cb_dtype)
    # per-dim rows, with repeated end values: the first index of the end value wins
    rows = torch.tensor([[0.0, 2.0, 2.0, -3.0, -3.0], [5.0, -1.0, 5.0, 0.0, -1.0]], dtype=cb_dtype)
    for codebook, z in ((glob, torch.tensor(values)[:, None]),
                        (rows, torch.tensor(values)[:, None].repeat(1, 2))):  # fmt: skip
        z = z.to(dtype)
        lo, hi = (
            codebook.reshape(-1, codebook.shape[-1]).amin(-1),
            codebook.reshape(-1, codebook.shape[-1]).amax(-1),
        )
        with fqvae.backend(name):
            out = fqvae.ops.quantize_nearest(z, codebook)
        q = out.quantized.to(cb_dtype)
        zf = z.to(cb_dtype)
        assert torch.equal(q[zf > hi], hi.expand_as(zf)[zf > hi])
        assert torch.equal(q[zf < lo], lo.expand_as(zf)[zf < lo])
        assert torch.equal(out.indices, fqvae.reference.quantize_nearest(z, codebook).indices)


@pytest.mark.parametrize("name", fqvae.available_backends("cpu"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_huge_finite_latents_take_the_end_value_in_gumbel(name, dtype):
    if reason := fqvae.backends.unavailable_reason(name, torch.device("cpu"), dtype):
        pytest.skip(f"{name}: {reason}")
    values = [v for v in HUGE if abs(v) <= torch.finfo(dtype).max and abs(v) >= 6e4]
    cb_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    codebook = torch.linspace(-1, 1, 10, dtype=cb_dtype).requires_grad_()
    z = torch.tensor(values, dtype=dtype)[:, None].requires_grad_()
    with fqvae.backend(name):
        out = fqvae.ops.quantize_gumbel(z, codebook, tau=0.5, seed=3)
        (out.value.sum() + out.kl).backward()
    end = torch.where(z.detach() > 0, 9, 0)
    assert torch.equal(out.indices, end)
    assert torch.equal(out.value.to(cb_dtype), codebook.detach()[end])
    assert torch.isfinite(out.kl) and torch.isfinite(z.grad).all()
    assert torch.isfinite(codebook.grad).all()


@pytest.mark.parametrize("tau", [1e-40, 0.0, -1.0, float("inf"), float("nan")])
def test_gumbel_tau_outside_float32s_range_is_refused(tau):
    with pytest.raises(ValueError, match="tau must be (finite and >= 1e-20|a number > 0)"):
        fqvae.ops.quantize_gumbel(torch.zeros(2, 3), torch.tensor([0.0, 1.0]), tau=tau, seed=1)

"""The op-level API of :mod:`fqvae.ops`: argument checking, edge cases, randomness, backend
selection, float64 gradchecks of the reference and ``torch.compile``.

Backend parity (every backend against the reference) lives in ``test_backend_parity.py``.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import fqvae
from fqvae import backends, ops, reference
from fqvae.backends.protocol import Backend

pytestmark = pytest.mark.filterwarnings("ignore:fqvae. backend:RuntimeWarning")

HAS_CUDA = torch.cuda.is_available()
OTHER_DEVICE = "cuda" if HAS_CUDA else "meta"


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _codebook(k, rows=None, seed=1, dtype=torch.float32):
    shape = (k,) if rows is None else (rows, k)
    return _randn(*shape, seed=seed, dtype=dtype).sort(-1).values


def _set(t, i, value):
    out = t.clone()
    out[i] = value
    return out


# --------------------------------------------------------------------------------------------
# bad inputs: ValueError / TypeError naming the argument

QUANTIZERS = {
    "nearest": lambda z, cb, **kw: ops.quantize_nearest(z, cb, 1, **kw),
    "gumbel": lambda z, cb, **kw: ops.quantize_gumbel(z, cb, 1, seed=0, **kw),
}


@pytest.mark.parametrize("op", sorted(QUANTIZERS))
def test_quantize_rejects_bad_arguments(op):
    f = QUANTIZERS[op]
    z, cb = _randn(4, 5), _codebook(8)
    cases = [
        (TypeError, "z must be a floating-point", lambda: f(z.long(), cb)),
        (TypeError, "z and codebook", lambda: f(z.tolist(), cb)),
        (TypeError, "codebook must be a floating-point", lambda: f(z, cb.int())),
        (TypeError, "codebook dtype", lambda: f(z.double(), cb)),
        (TypeError, "codebook dtype", lambda: f(z, cb.double())),
        (ValueError, r"codebook must have shape \(D, K\)", lambda: f(z, _codebook(8, rows=3))),
        (ValueError, r"codebook must have shape \(K,\)", lambda: f(z, torch.zeros(5, 8, 2))),
        (ValueError, "codebook size K", lambda: f(z, torch.zeros(1))),
        (ValueError, "codebook size K", lambda: f(z, torch.zeros(5, 1))),
        (ValueError, "codebook size K", lambda: f(z, torch.zeros(257))),
        (ValueError, "codebook is on", lambda: f(z.to(OTHER_DEVICE), cb)),
        (ValueError, "codebook is on", lambda: f(z, cb.to(OTHER_DEVICE))),
        (ValueError, "dim=1 is out of range", lambda: f(_randn(5), cb)),
        (ValueError, "codebook contains non-finite", lambda: f(z, _set(cb, 3, math.nan))),
        (ValueError, "codebook contains non-finite", lambda: f(z, _set(cb, 0, math.inf))),
    ]
    for exc, match, call in cases:
        with pytest.raises(exc, match=match):
            call()
    for dim in (2, -3):
        with pytest.raises(ValueError, match=f"dim={dim} is out of range"):
            ops.quantize_nearest(z, cb, dim)
    with pytest.raises(ValueError, match="dimension"):
        ops.quantize_nearest(torch.tensor(0.5), cb, 0)


def test_nearest_rejects_bad_index_dtype():
    z, cb = _randn(4, 5), _codebook(8)
    with pytest.raises(TypeError, match="index_dtype"):
        ops.quantize_nearest(z, cb, index_dtype=torch.float32)
    for dt in (torch.int16, torch.int32, torch.int64, torch.uint8):
        out = ops.quantize_nearest(z, cb, index_dtype=dt)
        assert out.indices.dtype == dt


def test_nearest_loss_weights_are_real_numbers():
    z, cb = _randn(4, 5), _codebook(8)
    for bad in (torch.tensor(1.0), True, "1"):
        with pytest.raises(TypeError, match="quant_weight"):
            ops.quantize_nearest(z, cb, quant_weight=bad)
    as_int = ops.quantize_nearest(z, cb, quant_weight=1, commit_weight=np.float32(0.5)).loss
    as_float = ops.quantize_nearest(z, cb, quant_weight=1.0, commit_weight=0.5).loss
    assert as_int.item() == as_float.item()


def test_gumbel_rejects_bad_tau_and_seed():
    z, cb = _randn(4, 5), _codebook(8)
    for tau in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="tau"):
            ops.quantize_gumbel(z, cb, tau=tau)
    for tau in (torch.tensor(0.0), torch.tensor(-0.5, dtype=torch.float64)):
        with pytest.raises(ValueError, match="tau"):
            ops.quantize_gumbel(z, cb, tau=tau)
    with pytest.raises(TypeError, match="tau"):
        ops.quantize_gumbel(z, cb, tau=torch.tensor([0.5, 0.5]))
    with pytest.raises(TypeError, match="tau"):
        ops.quantize_gumbel(z, cb, tau=torch.tensor(1))
    with pytest.raises(ValueError, match="tau"):
        ops.quantize_gumbel(z, cb, tau="0.5")
    with pytest.raises(TypeError, match="seed"):
        ops.quantize_gumbel(z, cb, seed=torch.tensor(3, dtype=torch.int32))
    for seed in (-1, 2**63, 1.5, True):
        with pytest.raises(ValueError, match="seed"):
            ops.quantize_gumbel(z, cb, seed=seed)
    for offset in (-1, 2**32):
        with pytest.raises(ValueError, match="offset"):
            ops.quantize_gumbel(z, cb, offset=offset)


def test_permute_rejects_bad_arguments():
    x = _randn(4, 3, 2)
    with pytest.raises(ValueError, match="batch_dim and dim must differ"):
        ops.permute_dims(x, seed=0, batch_dim=1, dim=1)
    with pytest.raises(ValueError, match="batch_dim and dim must differ"):
        ops.permute_dims(x, seed=0, batch_dim=-2, dim=1)
    with pytest.raises(ValueError, match="dim=3 is out of range"):
        ops.permute_dims(x, seed=0, dim=3)
    with pytest.raises(ValueError, match="batch_dim=-4 is out of range"):
        ops.permute_dims(x, seed=0, batch_dim=-4)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        ops.permute_dims(_randn(4), seed=0)
    with pytest.raises(TypeError, match="x must be"):
        ops.permute_dims([[1.0, 2.0]], seed=0)
    with pytest.raises(ValueError, match="seed"):
        ops.permute_dims(x, seed=-3)


# --------------------------------------------------------------------------------------------
# empty tensors


@pytest.mark.parametrize("per_dim", [False, True])
def test_empty_inputs_give_empty_outputs(per_dim):
    z = torch.empty(0, 5, requires_grad=True)
    cb = _codebook(8, rows=5 if per_dim else None).requires_grad_()
    near = ops.quantize_nearest(z, cb, 1, quant_weight=1.0, commit_weight=1.0)
    assert near.quantized.shape == (0, 5) and near.indices.shape == (0, 5)
    assert near.loss.dim() == 0 and near.loss.item() == 0.0
    gz, gc = torch.autograd.grad(near.quantized.sum() + near.loss, [z, cb])
    assert gz.shape == z.shape and not gc.any()

    gum = ops.quantize_gumbel(z, cb, 1, seed=0, return_probs=True)
    assert gum.value.shape == (0, 5) and gum.indices.shape == (0, 5)
    assert gum.probs.shape == (0, 5, 8)
    assert gum.kl.item() == 0.0
    gz, gc = torch.autograd.grad(gum.value.sum() + gum.kl, [z, cb])
    assert gz.shape == z.shape and not gc.any()

    for x in (torch.empty(0, 5), torch.empty(4, 0), torch.empty(4, 5, 0)):
        assert ops.permute_dims(x, seed=1).shape == x.shape


# --------------------------------------------------------------------------------------------
# seeds and temperatures


def test_seed_none_is_reproducible_under_manual_seed():
    z, cb = _randn(16, 6), _codebook(8)
    torch.manual_seed(3)
    a = ops.quantize_gumbel(z, cb, tau=0.5)
    pa = ops.permute_dims(z)
    torch.manual_seed(3)
    b = ops.quantize_gumbel(z, cb, tau=0.5)
    pb = ops.permute_dims(z)
    assert torch.equal(a.value, b.value) and torch.equal(pa, pb)
    c = ops.quantize_gumbel(z, cb, tau=0.5)  # the generator moved on: new noise
    assert not torch.equal(a.value, c.value)


def test_tensor_seed_and_tau_match_python_numbers():
    z, cb = _randn(16, 6), _codebook(8, rows=6)
    a = ops.quantize_gumbel(z, cb, 1, tau=0.3, seed=12345, offset=2, return_probs=True)
    b = ops.quantize_gumbel(
        z, cb, 1, tau=torch.tensor(0.3), seed=torch.tensor(12345), offset=2, return_probs=True
    )
    assert torch.equal(a.value, b.value) and torch.equal(a.probs, b.probs)
    c = ops.quantize_gumbel(z, cb, 1, tau=torch.tensor([0.3], dtype=torch.float64), seed=12345)
    assert torch.equal(c.value, ops.quantize_gumbel(z, cb, 1, tau=0.3, seed=12345).value)
    # offset and seed select different streams
    assert not torch.equal(a.value, ops.quantize_gumbel(z, cb, 1, tau=0.3, seed=12345).value)
    assert not torch.equal(a.value, ops.quantize_gumbel(z, cb, 1, tau=0.3, seed=1, offset=2).value)
    assert torch.equal(
        ops.permute_dims(z, seed=torch.tensor([77])), ops.permute_dims(z, seed=77, offset=0)
    )
    assert torch.equal(ops.permute_dims(z, seed=2**63 - 1), ops.permute_dims(z, seed=2**63 - 1))


# --------------------------------------------------------------------------------------------
# backend selection


def test_backend_context_manager_pins_and_nests():
    cpu = torch.device("cpu")
    with fqvae.backend("reference"):
        assert backends.select(cpu, torch.float32).__name__.endswith("reference_backend")
        with fqvae.backend("triton"):
            assert backends._pinned() == "triton"
        assert backends._pinned() == "reference"
    with pytest.raises(ValueError, match="backend must be one of"):
        with fqvae.backend("numpy"):
            pass
    assert "reference" in fqvae.available_backends("cpu")


def test_fallback_warns_once(monkeypatch):
    """A pinned backend that cannot run the call falls back to the reference, warning once."""
    monkeypatch.setattr(backends, "_warned", set())
    z, cb = _randn(4, 5), _codebook(8)
    expected = ops.quantize_nearest(z, cb).quantized
    with fqvae.backend("cuda"):  # never runs CPU tensors
        with pytest.warns(RuntimeWarning, match="backend 'cuda' is unavailable on cpu"):
            out = ops.quantize_nearest(z, cb).quantized
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = ops.quantize_nearest(z, cb).quantized
    assert torch.equal(out, expected) and torch.equal(again, expected)


_ENV_SCRIPT = """
import warnings, torch, fqvae
from fqvae import backends, ops
warnings.simplefilter("error", RuntimeWarning)
z, cb = torch.randn(4, 5), torch.linspace(-1, 1, 8)
try:
    ops.quantize_nearest(z, cb)
    print("ran without a warning")
except RuntimeWarning as exc:
    print("RuntimeWarning", exc)
with fqvae.backend("reference"):
    ops.quantize_nearest(z, cb)
    print("pinned", backends.select(torch.device("cpu"), torch.float32).__name__)
"""


def test_env_var_pins_backend_in_a_fresh_process():
    """FQVAE_BACKEND set before start-up: the pinned backend (here one that cannot run CPU
    tensors) falls back with a warning, and the context manager takes precedence."""
    root = str(Path(fqvae.__file__).resolve().parent.parent)
    env = dict(os.environ, FQVAE_BACKEND="cuda")
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", _ENV_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeWarning fqvae: backend 'cuda' is unavailable on cpu" in proc.stdout
    assert "pinned fqvae.backends.reference_backend" in proc.stdout


def test_env_var_is_read_per_call(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("FQVAE_BACKEND", "reference")
    assert backends.select(cpu, torch.float32).__name__ == "fqvae.backends.reference_backend"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pinned reference never warns
        ops.quantize_nearest(_randn(3, 2), _codebook(4))
    monkeypatch.setenv("FQVAE_BACKEND", "bogus")
    with pytest.raises(ValueError, match="FQVAE_BACKEND='bogus' is not a backend"):
        ops.quantize_nearest(_randn(3, 2), _codebook(4))
    with fqvae.backend("reference"):  # the context manager wins over the variable
        ops.quantize_nearest(_randn(3, 2), _codebook(4))
    monkeypatch.setenv("FQVAE_BACKEND", "")
    assert backends._pinned() is None


# --------------------------------------------------------------------------------------------
# the random stream


@pytest.mark.parametrize(
    "counter,key,expected",
    [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((2**32 - 1,) * 4, (2**32 - 1,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox_known_answers(counter, key, expected):
    """Random123's known-answer vectors for Philox-4x32-10."""
    seed = key[0] | (key[1] << 32)
    words = reference.philox4x32_10(tuple(torch.tensor([c]) for c in counter), seed)
    assert tuple(int(w) for w in words) == expected


def test_random_bits_layout():
    bits = ops.random_bits(3, 6, seed=5, offset=9)
    assert bits.dtype == torch.int64 and bits.shape == (3, 6)
    assert bits.min() >= 0 and bits.max() < 2**32
    assert torch.equal(bits, reference.random_bits(3, 6, 5, 9))
    # element (r, c) is lane c % 4 of Philox at counter (c // 4, r, 0, offset)
    words = reference.philox4x32_10(
        (torch.tensor([1]), torch.tensor([2]), torch.tensor([0]), torch.tensor([9])), 5
    )
    assert int(bits[2, 5]) == int(words[1])


def test_random_bits_seed_none_draws_one_randint_and_compiles_whole():
    """``seed=None`` takes one ``randint`` from torch's generator, as every random op does, and
    a compiled caller draws it inside its one graph (the dVAE family's noise). ``aot_eager``
    keeps eager's generator; inductor draws from its own, reproducibly."""
    torch.manual_seed(4)
    eager = ops.gumbel_noise(5, 7, seed=None)
    torch.manual_seed(4)
    seed = int(torch.randint(0, 2**62, ()))
    assert torch.equal(eager, reference.gumbel_noise(5, 7, seed, 0))
    assert torch.equal(
        ops.random_bits(5, 7, torch.tensor(seed)), reference.random_bits(5, 7, seed, 0)
    )
    torch._dynamo.reset()
    for backend in ("aot_eager", "inductor"):
        compiled = torch.compile(
            lambda: ops.gumbel_noise(5, 7, seed=None), fullgraph=True, backend=backend
        )
        torch.manual_seed(4)
        first = compiled()
        torch.manual_seed(4)
        assert torch.equal(compiled(), first)
        assert torch.equal(first, eager) == (backend == "aot_eager")


def test_gumbel_noise_is_standard_gumbel():
    stats = pytest.importorskip("scipy.stats")
    g = ops.gumbel_noise(1000, 100, seed=2024).double().flatten()
    assert g.numel() == 100_000 and torch.isfinite(g).all()
    assert torch.equal(g.float(), reference.gumbel_noise(1000, 100, 2024, 0).flatten())
    result = stats.kstest(g.numpy(), "gumbel_r")
    assert result.pvalue > 0.01, result
    assert abs(g.mean().item() - 0.5772156649) < 0.02
    assert abs(g.var().item() - math.pi**2 / 6) < 0.05


def test_permutations_are_uniform():
    """B = 4: each of the 24 permutations equally likely over 4800 columns (chi-square)."""
    stats = pytest.importorskip("scipy.stats")
    batch, columns = 4, 4800
    x = torch.arange(batch, dtype=torch.float32)[:, None].expand(batch, columns).contiguous()
    out = ops.permute_dims(x, seed=99)
    assert torch.equal(out.sort(0).values, x)  # every column is a permutation
    code = {p: i for i, p in enumerate(itertools.permutations(range(batch)))}
    ids = [code[tuple(col)] for col in out.long().T.tolist()]
    counts = torch.bincount(torch.tensor(ids), minlength=24)
    result = stats.chisquare(counts.numpy())
    assert result.pvalue > 0.001, (counts, result)
    assert torch.equal(out.long(), reference.permutations(batch, columns, 99, 0))


def test_permute_moves_trailing_features_as_a_unit():
    x = _randn(6, 3, 4, seed=2)
    out = ops.permute_dims(x, seed=5)
    perm = reference.permutations(6, 3, 5, 0)
    for j in range(3):
        assert torch.equal(out[:, j, :], x[perm[:, j], j, :])
    # a non-default layout: batch along dim 1, latents along dim 0
    xt = x.transpose(0, 1)
    assert torch.equal(ops.permute_dims(xt, seed=5, batch_dim=1, dim=0), out.transpose(0, 1))


# --------------------------------------------------------------------------------------------
# float64 gradchecks of the reference (the functions, and the reference backend through ops)


def _gradcheck(fn, *inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("through_ops", [False, True], ids=["reference", "ops"])
@pytest.mark.parametrize("per_dim", [False, True], ids=["global", "per_dim"])
def test_gradcheck_nearest_losses(through_ops, per_dim):
    fn = ops.quantize_nearest if through_ops else reference.quantize_nearest
    z = _randn(7, 3, 2, seed=3, dtype=torch.float64)
    cb = _codebook(5, rows=3 if per_dim else None, dtype=torch.float64)
    with fqvae.backend("reference"):
        # the quantization term trains the codebook only ...
        _gradcheck(lambda c: fn(z, c, 1, quant_weight=0.7).loss, cb.clone().requires_grad_())
        # ... and the commitment term the input only
        _gradcheck(lambda x: fn(x, cb, 1, commit_weight=0.3).loss, z.clone().requires_grad_())
        zr, cr = z.clone().requires_grad_(), cb.clone().requires_grad_()
        out = fn(zr, cr, 1, quant_weight=0.7, commit_weight=0.3)
        gz, gc = torch.autograd.grad(out.loss, [zr, cr])
        q = out.quantized.detach()
        torch.testing.assert_close(gz, 0.6 / z.numel() * (z - q))  # no quant term in dz


@pytest.mark.parametrize("through_ops", [False, True], ids=["reference", "ops"])
@pytest.mark.parametrize("per_dim", [False, True], ids=["global", "per_dim"])
def test_gradcheck_gumbel(through_ops, per_dim):
    fn = ops.quantize_gumbel if through_ops else reference.quantize_gumbel
    z = _randn(4, 3, seed=4, dtype=torch.float64).requires_grad_()
    cb = _codebook(4, rows=3 if per_dim else None, dtype=torch.float64).requires_grad_()

    def outputs(x, c):
        out = fn(x, c, 1, tau=0.7, seed=11, offset=1, return_probs=True)
        return out.value, out.kl, out.probs

    with fqvae.backend("reference"):
        # each output alone, so a wrong term cannot hide behind another
        for i in range(3):
            _gradcheck(lambda x, c, i=i: outputs(x, c)[i], z, cb)


@pytest.mark.parametrize("through_ops", [False, True], ids=["reference", "ops"])
def test_gradcheck_permute(through_ops):
    x = _randn(5, 3, 2, seed=6, dtype=torch.float64).requires_grad_()
    with fqvae.backend("reference"):
        if through_ops:
            _gradcheck(lambda t: ops.permute_dims(t, seed=8, offset=1), x)
        else:
            _gradcheck(lambda t: reference.permute_dims(t, seed=8, offset=1), x)


# --------------------------------------------------------------------------------------------
# torch.compile


def _all_three(z, cb_dim, cb_global, w):
    near = ops.quantize_nearest(z, cb_dim, 1, quant_weight=0.5, commit_weight=0.25)
    gum = ops.quantize_gumbel(near.quantized, cb_global, 1, tau=0.5, seed=7, return_probs=True)
    mixed = ops.permute_dims(gum.probs, seed=11)
    loss = (mixed * w).sum() + gum.value.square().sum() + near.loss + gum.kl
    return loss, near.indices, gum.indices


def test_compile_fullgraph_all_three_ops_matches_eager():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    z = _randn(8, 4, seed=1)
    cb_dim, cb_global = _codebook(6, rows=4, seed=2), _codebook(5, seed=3)
    w = _randn(8, 4, 5, seed=4)
    compiled = torch.compile(_all_three, fullgraph=True)
    results = []
    for fn in (_all_three, compiled):
        leaves = [t.clone().requires_grad_() for t in (z, cb_dim, cb_global)]
        loss, i1, i2 = fn(*leaves, w)
        grads = torch.autograd.grad(loss, leaves)
        results.append((loss, i1, i2, grads))
    (le, ie1, ie2, ge), (lc, ic1, ic2, gc) = results
    torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-5)
    assert torch.equal(ic1, ie1) and torch.equal(ic2, ie2)
    for a, b in zip(gc, ge):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 1


def _graph_nodes(t: torch.Tensor) -> set[str]:
    """Class names of every autograd node behind ``t``."""
    seen, todo = {}, [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = type(node).__name__
            todo += [n for n, _ in node.next_functions]
    return set(seen.values())


def test_eager_calls_take_the_twin_and_fake_tensors_the_op():
    """Eager calls on plain tensors use the autograd.Function twin (the fast path); fake tensors
    (tracing) go through the custom op and its fake implementation."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    z = _randn(8, 4, seed=1).requires_grad_()
    cb = _codebook(6, seed=2).requires_grad_()
    near = ops.quantize_nearest(z, cb, 1, commit_weight=1.0)
    gum = ops.quantize_gumbel(z, cb, 1, seed=3)
    perm = ops.permute_dims(z, seed=4)
    assert "QuantizeNearestBackward" in _graph_nodes(near.loss)
    assert "QuantizeGumbelBackward" in _graph_nodes(gum.kl)
    assert "PermuteDimsBackward" in _graph_nodes(perm)
    with torch.no_grad():  # no gradient needed: the bare implementation, no graph
        assert ops.quantize_nearest(z, cb, 1, commit_weight=1.0).loss.grad_fn is None
    with FakeTensorMode():
        fz, fcb = torch.empty(8, 4), torch.empty(6)
        out = ops.quantize_nearest(fz, fcb, 1)
        assert out.quantized.shape == (8, 4) and out.indices.dtype == torch.int64


@pytest.mark.parametrize("name", backends.NAMES)
def test_every_backend_module_satisfies_the_protocol(name):
    module = importlib.import_module(f"fqvae.backends.{name}_backend")
    assert isinstance(module, Backend)
    for member, spec in inspect.getmembers(Backend, inspect.isfunction):
        if member.startswith("_"):
            continue
        expected = list(inspect.signature(spec).parameters)[1:]  # without self
        assert list(inspect.signature(getattr(module, member)).parameters) == expected, member

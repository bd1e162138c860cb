"""Model zoo tests: training steps, modes, the discriminator step, QLAE's optimizer and
codebook gradient, sizes, the registry and the published settings. CPU, ``arch="small"``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fqvae import ops, reference
from fqvae.models import (
    CONFIGURATIONS,
    METHODS,
    MODELS,
    DisentanglementModel,
    build_model,
    hparam_defaults,
    hparam_names,
)
from fqvae.models.betatcvae import log_normal, mws_decomposition
from fqvae.models.common import decay_groups
from fqvae.models.didr import sample_pairs, supervised_contrastive
from fqvae.models.tc import discriminator_terms, tc_estimate
from fqvae.models.wgan import gradient_penalty
from fqvae.nn import TCDiscriminator, build_backbone
from fqvae.quantizers.logits import gumbel_softmax
from fqvae.training.published import PUBLISHED, published

ALL = sorted(MODELS)
FACTOR = ["factordvae", "factorqvae", "factorvae"]
INDEX_REPR = ["dvae", "factordvae", "factorqvae", "qlae_factorqvae", "qvae", "vqvae_hsu2023"]
SMALL_DISC = {"disc_width": 32, "disc_depth": 1}
L = 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: steadier timings on a small shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_images(n: int = 16, size: int = 32, channels: int = 3) -> torch.Tensor:
    """``n`` images in [0, 1]: a coloured square on a 4x4 grid of positions, dark background."""
    x = torch.full((n, channels, size, size), 0.1)
    side = size // 4
    for i in range(n):
        r, c = divmod(i % 16, 4)
        colour = torch.tensor([(i % 3) / 2, ((i + 1) % 3) / 2, 1.0])[:channels]
        x[i, :, r * side : (r + 1) * side, c * side : (c + 1) * side] = colour[:, None, None]
    return x


def make(name: str, size: int = 32, channels: int = 3, **hparams) -> torch.nn.Module:
    torch.manual_seed(0)
    if MODELS[name].has_discriminator:
        hparams = {**SMALL_DISC, **hparams}
    return build_model(
        name, in_channels=channels, image_size=size, num_latents=L, arch="small", **hparams
    )


def pixels_for(model, x: torch.Tensor) -> torch.Tensor:
    return x - 0.5 if model.pixels == "centered" else x


def train_step(model, opts, x: torch.Tensor) -> tuple[dict, dict | None]:
    """One batch exactly as the trainer runs it (base.py)."""
    x1, x2 = x.chunk(2) if model.has_discriminator else (x, None)
    terms = model(x1)
    for opt in opts.main:
        opt.zero_grad()
    terms["loss"].backward()
    model.before_optimizer_step()
    for opt in opts.main:
        opt.step()
    d_terms = None
    if model.has_discriminator:
        d_terms = model.discriminator_loss(terms["codes"], x2)
        opts.discriminator.zero_grad()
        d_terms["loss"].backward()
        opts.discriminator.step()
    for sched in opts.schedulers:
        sched.step()
    return terms, d_terms


@pytest.mark.parametrize("name", ALL)
def test_training_reduces_loss(name):
    model = make(name)
    x = pixels_for(model, toy_images(16 if model.has_discriminator else 8))
    opts = model.configure_optimizers(lr=2e-3, iterations=100)
    losses = []
    for it in range(20):
        model.set_step(it)
        terms, d_terms = train_step(model, opts, x)
        # a WGAN's summed loss is no learning signal; its critic's Wasserstein estimate is
        losses.append(-terms["wdist"].item() if "wdist" in terms else terms["loss"].item())
    for key, value in terms.items():
        if key != "codes":
            assert value.dim() == 0 and torch.isfinite(value), key
    if model.has_discriminator:
        assert {"tc_raw", "tc_weighted", "codes"} <= set(terms)
        assert torch.allclose(terms["tc_weighted"], model.gamma * terms["tc_raw"])
        assert set(d_terms) == {"loss", "disc_acc"} and 0 <= d_terms["disc_acc"] <= 1
    assert sum(losses[-4:]) < sum(losses[:4]), losses


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("channels,size", [(3, 32), (1, 64)])
def test_shapes_and_dtypes(name, channels, size):
    model = make(name, size=size, channels=channels)
    x = pixels_for(model, toy_images(4, size, channels))
    rep = model.representation(x)
    assert rep.shape == (4, L) and model.training
    if name in INDEX_REPR:
        assert rep.dtype == torch.int64 and model.discrete
    else:
        assert rep.is_floating_point()
    assert model.discrete == (name in INDEX_REPR or name.startswith(("qlae_", "qlinfowgan")))
    z = model.encode_latents(x)
    assert z.shape == (4, L) and z.dtype == torch.float32
    out = model.reconstruct(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.allclose(model.decode_latents(z), out)
    if model.pixels == "unit":
        assert out.min() >= 0 and out.max() <= 1
    assert model.traversal_values(5).shape == (L, 5)


def test_factorqvae_soft_in_training_hard_in_eval():
    model = make("factorqvae")
    k = model.latent.num_values
    x = pixels_for(model, toy_images(8))
    codes = model(x)["codes"]
    assert codes.shape == (8, L, k)
    assert torch.allclose(codes.sum(-1), torch.ones(8, L))
    assert ((codes > 0) & (codes < 1)).any(), "training codes should be soft"
    rep = model.representation(x)
    assert model.training, "representation must restore the training mode"
    assert rep.dtype == torch.int64 and rep.min() >= 0 and rep.max() < k
    model.eval()
    hard = model(x)["codes"]
    assert torch.equal(hard, F.one_hot(rep, k).float())
    values = model.encode_latents(x)
    assert torch.equal(values, model.latent.codebook.detach()[rep])


def test_quantized_traversal_uses_codebook_values():
    model = make("qlae_hsu2023")
    values = model.traversal_values(10)
    assert torch.allclose(values, torch.linspace(-0.5, 0.5, 10).expand(L, -1))
    model = make("qvae")
    trav = model.traversal_values(3)
    sorted_cb = model.latent.codebook.detach().sort().values
    assert torch.equal(trav[0], sorted_cb[[0, 32, 63]])


@pytest.mark.parametrize("name", ["factorqvae", "dvae"])
def test_tau_schedule_per_batch(name):
    model = make(name, tau_rate=1e-3)
    model.set_step(1000)
    tau = model.latent.tau
    assert math.isclose(tau, math.exp(-1.0), rel_tol=1e-9)
    assert math.isclose(model(pixels_for(model, toy_images(4)))["tau"].item(), tau, rel_tol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_compile_graph_breaks_are_as_declared(name):
    """``--compile`` tells the user which models compile in pieces: a model that declares no
    ``graph_breaks`` traces its training forward as one graph, and one that declares them
    does break (so the declaration cannot go stale either way)."""
    model = make(name)
    x = pixels_for(model, toy_images(8))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(x)
    reasons = [str(b.reason).splitlines()[0] for b in explained.break_reasons]
    assert (explained.graph_break_count == 0) == (not model.graph_breaks), reasons


@pytest.mark.parametrize("name", ["factorqvae", "dvae"])
def test_compiled_gumbel_models_follow_tau_without_recompiling(name):
    """One graph over three temperatures, the noise seed drawn inside it."""
    from torch._dynamo.utils import counters

    model = make(name, tau_rate=1e-3)
    x = pixels_for(model, toy_images(8))
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    for step in (0, 500, 1000):
        model.set_step(step)
        terms = compiled(x)
        terms["loss"].backward()
        assert math.isclose(terms["tau"].item(), math.exp(-1e-3 * step), rel_tol=1e-6)
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 1


def test_dvae_gumbel_noise_is_the_shared_philox_stream():
    torch.manual_seed(0)
    z, codebook = torch.randn(6, L), torch.randn(8)
    logits = -((z[..., None] - codebook) ** 2)  # QVAE's logits: dVAE's softmax sees the same g
    expected = reference.quantize_gumbel(z, codebook, tau=0.7, seed=123, return_probs=True).probs
    assert torch.allclose(gumbel_softmax(logits, 0.7, seed=123), expected, atol=1e-6)
    # seed=None: one seed from torch's generator, exactly as ops.quantize_gumbel (QVAE) draws it
    torch.manual_seed(5)
    ours = gumbel_softmax(logits, 0.7)
    after = torch.randint(0, 2**62, ())
    torch.manual_seed(5)
    theirs = ops.quantize_gumbel(z, codebook, tau=0.7, return_probs=True).probs
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.equal(torch.randint(0, 2**62, ()), after)


def test_dvae_training_noise_is_reproducible():
    model = make("dvae", tau_rate=1e-3)
    model.set_step(500)
    x = pixels_for(model, toy_images(4))
    torch.manual_seed(7)
    probs = model.quantize(x).probs
    torch.manual_seed(7)
    seed = int(torch.randint(0, 2**62, ()))  # the one draw of ops' seed=None
    logits = model.encoder(x).view(4, L, -1)
    noise = ops.gumbel_noise(4 * L, logits.shape[-1], seed).view_as(logits)
    assert torch.equal(probs, torch.softmax((logits + noise) / model.latent.tau, dim=-1))
    torch.manual_seed(7)
    assert torch.equal(model._losses(x)[1], probs)


def snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def changed(before, module):
    return {n for n, p in module.named_parameters() if not torch.equal(before[n], p)}


@pytest.mark.parametrize("name", FACTOR)
def test_discriminator_step(name):
    model = make(name)
    opts = model.configure_optimizers(lr=1e-3, iterations=10)
    x1, x2 = pixels_for(model, toy_images(16)).chunk(2)
    disc, enc = model.discriminator, model.encoder
    d0, e0 = snapshot(disc), snapshot(enc)
    # VAE step: D's parameters are frozen inside forward and receive no gradient
    terms = model(x1)
    for opt in opts.main:
        opt.zero_grad()
    terms["loss"].backward()
    assert all(p.grad is None for p in disc.parameters())
    assert all(p.requires_grad for p in disc.parameters())
    for opt in opts.main:
        opt.step()
    assert not changed(d0, disc)
    assert changed(e0, enc)
    # D step after the VAE step changed the encoder in place: no autograd error, no encoder grad
    e1 = snapshot(enc)
    for opt in opts.main:
        opt.zero_grad(set_to_none=True)
    d_terms = model.discriminator_loss(terms["codes"], x2)
    opts.discriminator.zero_grad()
    d_terms["loss"].backward()
    assert all(p.grad is None for p in model.parameters() if p not in set(disc.parameters()))
    opts.discriminator.step()
    assert changed(d0, disc) == set(d0)
    assert not changed(e1, enc)


@pytest.mark.parametrize("name", ALL)
def test_has_discriminator_matches_the_submodule(name):
    model = make(name)
    children = dict(model.named_children())
    assert model.has_discriminator == ("discriminator" in children)
    if model.has_discriminator:
        assert model.discriminator is children["discriminator"]
        assert isinstance(model.discriminator, TCDiscriminator)
        assert any(n.startswith("discriminator.") for n in model.state_dict())
    else:
        assert not hasattr(model, "discriminator")
    opts = model.configure_optimizers(lr=1e-3, iterations=10)
    assert (opts.discriminator is not None) == model.has_discriminator


def test_base_class_does_not_shadow_a_registered_discriminator():
    class WithDisc(DisentanglementModel):
        has_discriminator = True

        def __init__(self) -> None:
            super().__init__()
            self.discriminator = torch.nn.Linear(2, 2)

    model = WithDisc()
    assert isinstance(model.discriminator, torch.nn.Linear)
    assert "discriminator.weight" in model.state_dict()
    assert not DisentanglementModel.has_discriminator
    assert not hasattr(DisentanglementModel, "discriminator")


DEFAULTS = {
    "factorqvae": {"kl_weight": 1e-3, "gamma": 1e-4, "tau_rate": 2e-5, "num_values": 64},
    "qvae": {"kl_weight": 1e-3, "tau_rate": 1e-5, "num_values": 64},
    "factordvae": {"kl_weight": 5e-3, "gamma": 5e-4, "tau_rate": 2e-5, "num_values": 64},
    "dvae": {"kl_weight": 5e-3, "tau_rate": 1e-5, "num_values": 64},
    "factorvae": {"kl_weight": 1e-4, "gamma": 1e-4},
    "vae": {"kl_weight": 1e-4},
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_documented_defaults_reach_the_model(name):
    expected = DEFAULTS[name]
    defaults = hparam_defaults(name)
    assert {k: defaults[k] for k in expected} == expected
    assert list(defaults) == list(hparam_names(name))
    model = make(name)
    assert model.kl_weight == expected["kl_weight"]
    assert getattr(model, "gamma", None) == expected.get("gamma")
    if "tau_rate" in expected:
        assert model.latent.codebook.shape == (expected["num_values"],)
        model.set_step(10_000)
        assert math.isclose(model.latent.tau, math.exp(-expected["tau_rate"] * 1e4), rel_tol=1e-12)
    if model.has_discriminator:
        assert (defaults["disc_width"], defaults["disc_depth"]) == (1000, 4)


@pytest.mark.parametrize("name", ALL)
def test_every_model_names_its_default_arch(name):
    # the trainer's presets read the default arch from the hparam defaults
    arch = hparam_defaults(name)["arch"]
    hparams = SMALL_DISC if MODELS[name].has_discriminator else {}
    model = build_model(name, in_channels=1, image_size=64, num_latents=L, **hparams)
    assert model.arch == arch and arch in ("dalle", "qlae", "dlib")


def test_qlae_global_ablation_shares_one_codebook():
    """Hsu et al.'s global-codebook ablation: one vector of 10 values at linspace(-0.5, 0.5),
    shared by every latent, trained by the quantization loss like QLAE's per-latent rows."""
    model = make("qlae_global_hsu2023")
    assert model.latent.codebook.shape == (10,)
    torch.testing.assert_close(model.latent.codebook.detach(), torch.linspace(-0.5, 0.5, 10))
    x = torch.rand(6, 3, 32, 32)
    model(x)["loss"].backward()
    assert model.latent.codebook.grad is not None and model.latent.codebook.grad.abs().sum() > 0
    codes = model.representation(x)
    assert torch.isin(codes, model.latent.codebook.detach()).all()
    assert published("qlae_global_hsu2023", "shapes3d")["hparams"]["weight_decay"] == 0.1


def test_vqvae_ablation_nearest_embedding_and_gradients():
    """Hsu et al.'s VQ-VAE ablation: each latent's 64-d vector goes to its nearest of 512 shared
    embeddings; the straight-through value feeds the decoder, the codebook loss trains the
    embeddings and the commitment loss (0.25) pulls the encoder."""
    model = make("vqvae_hsu2023")
    emb = model.latent.embeddings
    assert emb.shape == (512, 64)
    z = torch.randn(5, L * 64)
    codes = model.latent(z, L)
    brute = torch.cdist(z.reshape(5, L, 64), emb.detach()[None]).argmin(-1)
    assert torch.equal(codes.indices, brute)
    torch.testing.assert_close(codes.quantized, emb.detach()[brute].reshape(5, -1))
    z.requires_grad_()
    codes = model.latent(z, L)
    (codes.quantized.sum() + codes.codebook).backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # straight through, no commit term
    assert emb.grad[brute.unique()].abs().sum() > 0
    unused = torch.ones(512, dtype=torch.bool)
    unused[brute.unique()] = False
    assert emb.grad[unused].abs().sum() == 0
    x = torch.rand(4, 3, 32, 32)
    assert torch.allclose(model.decode_latents(model.encode_latents(x)), model.reconstruct(x))
    entry = published("vqvae_hsu2023", "shapes3d")["hparams"]
    assert (entry["codebook_weight"], entry["commit_weight"], entry["weight_decay"]) == (1, 0.25, 0)


def test_hsu_configured_baselines():
    """beta-VAE, AE and BioAE beside QLAE: BCE on unit pixels, Hsu's split optimizer, and the
    beta-VAE loss BCE_mean + (L / CHW) * beta * mean_j[-log sigma + (mu^2 + sigma^2 - 1) / 2]."""
    x = torch.rand(4, 3, 32, 32)
    vae = make("vae_hsu2023", beta=2.0)
    torch.manual_seed(5)
    out = vae(x)
    torch.manual_seed(5)
    mu, sigma, z = vae.posterior(x)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(vae.decoder(z), x)
    kl = (-sigma.log() + 0.5 * (mu**2 + sigma**2 - 1)).mean()
    torch.testing.assert_close(out["loss"], bce + (L / x[0].numel()) * 2.0 * kl)
    assert torch.equal(vae.representation(x), vae.posterior(x)[0].detach())
    for name, wd in (("vae_hsu2023", 0.0), ("ae_hsu2023", 0.0), ("bioae_hsu2023", 1e-4)):
        model = make(name)
        assert model.pixels == "unit" and model.optim.optimizer == "split"
        assert model.optim.weight_decay == wd and model.optim.clip_value == 1.0
    assert make("bioae_hsu2023").activity == 0.1
    assert published("vae_hsu2023", "falcor3d")["hparams"]["beta"] == 10.0
    assert published("bioae_hsu2023", "isaac3d")["hparams"]["activity"] == 0.1
    assert published("ae_hsu2023", "mpi3d")["hparams"]["weight_decay"] == 1e-3


def test_tc_gradient_reaches_encoder_not_discriminator():
    model = make("factorqvae")
    x = pixels_for(model, toy_images(8))
    _, codes = model._losses(x)
    tc = tc_estimate(model.discriminator, codes)
    logits = model.discriminator(codes.detach().flatten(1))
    assert torch.allclose(tc, (logits[:, 0] - logits[:, 1]).mean())
    model.zero_grad()
    tc.backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert model.latent.codebook.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in model.encoder.parameters())


class HoldLatents(torch.nn.Module):
    """Wraps an encoder: latent 0 sits far beyond the codebook's range on every image (or has
    logits that always pick value 0); latent 1 sits on a codebook value inside the range (or has
    logits that favour value 1 by only 0.5), where training's Gumbel noise still varies the sample
    but the noise-free code is constant; the rest are the encoder's output centred and stretched."""

    def __init__(self, encoder: torch.nn.Module, per_latent: int, inside: float) -> None:
        super().__init__()
        self.encoder, self.per_latent, self.inside = encoder, per_latent, inside

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.encoder(x)
        head = ((head - head.mean(0)) * 1e3).view(len(x), L, self.per_latent).clone()
        head[:, :2] = 0.0
        head[:, 0, 0] = 1e3
        if self.per_latent == 1:
            head[:, 1, 0] = self.inside
        else:
            head[:, 1, 1] = 0.5
        return head.flatten(1)


@pytest.mark.parametrize("name", ["qvae", "factorqvae", "dvae", "qlae_factorqvae"])
def test_in_use_counts_the_latents_whose_noise_free_code_varies(name):
    model = make(name)
    per_latent = model.num_values if name == "dvae" else 1
    inside = float(model.latent.codebook.detach().flatten().median())
    model.encoder = HoldLatents(model.encoder, per_latent, inside)
    x = pixels_for(model, toy_images(16))[: 8 if model.has_discriminator else 16]
    torch.manual_seed(0)
    terms = model(x)
    codes = model.representation(x)
    varying = int((codes != codes[:1]).any(0).sum())
    assert varying == L - 2  # latents 0 and 1 are held, the stretched ones vary
    assert terms["in_use"].dim() == 0 and float(terms["in_use"]) == varying
    if name != "qlae_factorqvae":  # the Gumbel models: the noisy sample of latent 1 does vary
        sampled = model.latent(model.encoder(x)).indices
        assert (sampled[:, 1] != sampled[0, 1]).any()


@pytest.mark.parametrize("name", ["factorqvae", "factorvae"])
def test_gamma_warmup_ramps_the_tc_weight_by_step(name):
    model = make(name, gamma=0.5, gamma_warmup=4)
    x = pixels_for(model, toy_images(8))
    seen = []
    for step in (0, 2, 4, 9):
        model.set_step(step)
        torch.manual_seed(1)
        terms = model(x)
        seen.append(float(terms["tc_weighted"] / terms["tc_raw"]))
    assert seen == pytest.approx([0.0, 0.25, 0.5, 0.5])
    assert make(name, gamma=0.5).gamma_now == 0.5  # no warm-up: the full weight from step 0
    with pytest.raises(ValueError, match="gamma_warmup must be an int >= 0"):
        make(name, gamma=0.5, gamma_warmup=-1)


@pytest.mark.parametrize("name", ["factorqvae", "factorvae"])
def test_gamma_delay_holds_the_tc_weight_at_zero_then_ramps(name):
    model = make(name, gamma=0.5, gamma_delay=3, gamma_warmup=4)
    weights = []
    for step in (0, 2, 3, 5, 7, 20):
        model.set_step(step)
        weights.append(model.gamma_now)
    assert weights == pytest.approx([0.0, 0.0, 0.0, 0.25, 0.5, 0.5])
    no_ramp = make(name, gamma=0.5, gamma_delay=3)
    no_ramp.set_step(2)
    assert no_ramp.gamma_now == 0.0
    no_ramp.set_step(3)
    assert no_ramp.gamma_now == 0.5
    with pytest.raises(ValueError, match="gamma_delay must be an int >= 0"):
        make(name, gamma=0.5, gamma_delay=2.5)


def test_discriminator_loss_is_the_safe_form():
    torch.manual_seed(0)
    disc = TCDiscriminator(12, width=16, depth=2)
    codes = torch.softmax(torch.randn(6, 3, 4), -1).requires_grad_()
    other = torch.softmax(torch.randn(6, 3, 4), -1)
    torch.manual_seed(1)
    terms = discriminator_terms(disc, codes, other)
    torch.manual_seed(1)
    perm = ops.permute_dims(other)
    d_real, d_perm = disc(codes.detach().flatten(1)), disc(perm.flatten(1))
    zeros, ones = torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)
    expected = 0.5 * (F.cross_entropy(d_real, zeros) + F.cross_entropy(d_perm, ones))
    assert torch.allclose(terms["loss"], expected)
    two_passes = torch.autograd.grad(expected, list(disc.parameters()))
    terms["loss"].backward()
    assert codes.grad is None
    for p, g in zip(disc.parameters(), two_passes):
        assert torch.allclose(p.grad, g, atol=1e-7)


def test_tc_discriminator_size():
    disc = TCDiscriminator(768)
    linears = [m for m in disc.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 6
    assert sum(p.numel() for p in disc.parameters()) == 4_775_002  # ~4.78M (spec §3)
    assert abs(linears[1].weight.std().item() - 0.02) < 1e-3
    assert all(torch.all(m.bias == 0) for m in linears)


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_dalle_backbone_size_and_init():
    encoder, decoder = build_backbone("dalle", 3, 64, 12, 12)
    total = count(encoder) + count(decoder)
    assert abs(total - 22.0e6) / 22.0e6 < 0.005, total
    assert abs(count(encoder.convs) - 2.30e6) / 2.30e6 < 0.005
    assert encoder.mlp[2].weight.shape == (128, 131072)
    assert abs(encoder.mlp[2].weight.std().item() - 0.02) < 1e-3
    assert abs(count(decoder) - 2.9e6) / 2.9e6 < 0.02


@pytest.mark.parametrize(
    ("arch", "size", "side"), [("small", 32, 2), ("small3", 32, 4), ("small3", 64, 8)]
)
def test_small_backbones_map_sizes(arch, size, side):
    encoder, decoder = build_backbone(arch, 3, size, 24, 12)
    x = torch.randn(2, 3, size, size)
    assert encoder(x).shape == (2, 24)
    assert decoder.seed_shape[1:] == (side, side)
    assert decoder(torch.randn(2, 12)).shape == x.shape
    with pytest.raises(ValueError, match="multiple of"):
        build_backbone(arch, 3, size + 4, 24, 12)


def test_dalle_forward_and_codebook_init():
    model = build_model("factorqvae", in_channels=3, image_size=32, num_latents=L, **SMALL_DISC)
    assert model.arch == "dalle" and model.pixels == "centered"
    x = pixels_for(model, toy_images(2))
    terms = model(x)
    terms["loss"].backward()
    assert model.reconstruct(x).shape == x.shape
    # the codebook keeps N(0, 1), not the backbone's N(0, 0.02)
    assert model.latent.codebook.std() > 0.3


@pytest.mark.parametrize("name", ["qvae", "factorqvae"])
def test_codebook_scale_widens_the_initial_codebook(name):
    args = {"in_channels": 3, "image_size": 32, "num_latents": 4, "arch": "small"}
    if name == "factorqvae":
        args.update(SMALL_DISC)
    torch.manual_seed(0)
    unit = build_model(name, **args).latent.codebook.detach().clone()
    torch.manual_seed(0)
    wide = build_model(name, **args, codebook_scale=5.0).latent.codebook.detach()
    torch.testing.assert_close(wide, 5.0 * unit)


@pytest.mark.parametrize("name", ["qvae", "factorqvae"])
def test_per_dim_codebook_ablation(name):
    """``codebook="per_dim"``: each latent draws and learns K values of its own, reads them
    through the same Gumbel-softmax, and its codes index its own row; the default stays the
    paper's one shared codebook."""
    args = {"in_channels": 3, "image_size": 32, "num_latents": 4, "arch": "small"}
    if name == "factorqvae":
        args.update(SMALL_DISC)
    assert build_model(name, **args).latent.codebook.shape == (64,)
    torch.manual_seed(0)
    unit = build_model(name, **args, codebook="per_dim").latent.codebook.detach().clone()
    torch.manual_seed(0)
    model = build_model(name, **args, codebook="per_dim", codebook_scale=5.0)
    values = model.latent.codebook
    assert values.shape == (4, 64)
    torch.testing.assert_close(values.detach(), 5.0 * unit)  # the scale applies to every row
    assert not torch.equal(unit[0], unit[1])  # one draw per latent
    x = torch.rand(6, 3, 32, 32) - 0.5
    terms = model(x)
    terms["loss"].backward()
    assert values.grad is not None and (values.grad.abs().sum(dim=1) > 0).all()
    model.eval()
    with torch.no_grad():
        index = model.representation(x)
        value = model.encode_latents(x)
    assert index.shape == (6, 4) and not index.dtype.is_floating_point
    rows = torch.arange(4).expand(6, -1)
    torch.testing.assert_close(value, values.detach()[rows, index])  # each latent's own row
    assert model.traversal_values(5).shape == (4, 5)


def test_qlae_arch_at_64():
    model = build_model("qlae_hsu2023", in_channels=3, image_size=64, num_latents=12)
    assert model.arch == "qlae" and model.pixels == "unit"
    assert model.decoder.const.shape == (256, 4, 4)
    x = toy_images(2, 64)
    assert model.reconstruct(x).shape == (2, 3, 64, 64)


def test_qlae_parameter_labelling():
    model = make("qlae_hsu2023")
    model = build_model("qlae_hsu2023", in_channels=3, image_size=32, num_latents=L)
    reg, unreg = decay_groups(model)
    names = {n for n, _ in model.named_parameters()}
    assert set(reg) | set(unreg) == names and not set(reg) & set(unreg)
    assert all(n.endswith("bias") or n.startswith("latent.") for n in unreg)
    assert "latent.codebook" in unreg
    assert "decoder.const" in reg
    norms = [
        f"{n}.weight"
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.GroupNorm) and m.affine
    ]
    assert norms and set(norms) <= set(reg)
    assert all(f"{n}.bias" in unreg for n in (s[: -len(".weight")] for s in norms))
    opts = model.configure_optimizers(lr=1e-3, iterations=10)
    adamw, adam = opts.main
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.1
    assert type(adam) is torch.optim.Adam and adam.defaults["weight_decay"] == 0
    params = dict(model.named_parameters())
    assert {id(p) for p in adamw.param_groups[0]["params"]} == {id(params[n]) for n in reg}
    assert {id(p) for p in adam.param_groups[0]["params"]} == {id(params[n]) for n in unreg}
    assert opts.schedulers == [] and opts.discriminator is None


def test_qlae_clipping_is_elementwise_on_regularized_group():
    model = build_model("qlae_hsu2023", in_channels=3, image_size=32, num_latents=L, arch="small")
    reg, _ = decay_groups(model)
    torch.manual_seed(0)
    raw = {n: torch.randn_like(p) * 3 for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = raw[n].clone()
    model.before_optimizer_step()
    for n, p in model.named_parameters():
        expected = raw[n].clamp(-1, 1) if n in reg else raw[n]
        assert torch.equal(p.grad, expected), n


def test_qlae_codebook_gradient_closed_form():
    model = make("qlae_hsu2023", quant_weight=0.3, commit_weight=0.05)
    x = toy_images(8)
    model.zero_grad()
    model(x)["loss"].backward()
    with torch.no_grad():
        z = model.encoder(x)
        values = model.latent.codebook
        k = (z[..., None] - values).abs().argmin(-1)
        q = values.expand(8, -1, -1).gather(-1, k[..., None]).squeeze(-1)
        expected = torch.zeros_like(values)
        expected.scatter_add_(1, k.T, (q - z).T)
        expected *= 2 * 0.3 / z.numel()
    assert torch.allclose(values.grad, expected, atol=1e-7)
    # without the quantization term the codebook receives nothing (straight-through recon)
    model = make("qlae_hsu2023", quant_weight=0.0)
    model(x)["loss"].backward()
    assert model.latent.codebook.grad is None or not model.latent.codebook.grad.any()


def test_qlae_frozen_values_and_presets():
    model = make("qlae_hsu2023", learn_values=False)
    assert "latent.codebook" not in dict(model.named_parameters())
    fq = make("qlae_factorqvae")
    assert fq.latent.codebook.shape == (L, 16) and fq.pixels == "centered"
    opts = fq.configure_optimizers(lr=1e-3, iterations=10)
    assert len(opts.main) == 1 and len(opts.schedulers) == 1


def test_mws_decomposition():
    torch.manual_seed(0)
    mu, sigma = torch.randn(5, 3), torch.rand(5, 3) + 0.5
    z = mu + sigma * torch.randn(5, 3)
    mi, tc, dwkl = mws_decomposition(z, mu, sigma, dataset_size=100)
    log_qzx = log_normal(z, mu, sigma).sum(1)
    log_pz = log_normal(z, torch.zeros(3), torch.ones(3)).sum(1)
    assert torch.allclose(mi + tc + dwkl, log_qzx - log_pz, atol=1e-5)
    for i in range(5):
        joint = torch.stack([log_normal(z[i], mu[j], sigma[j]).sum() for j in range(5)])
        log_qz = torch.logsumexp(joint, 0) - math.log(5 * 100)
        assert torch.allclose(mi[i], log_qzx[i] - log_qz, atol=1e-5)


def test_cosine_schedule_cycles():
    for cycle, at_end in (("periodic", 1e-3), ("single", 1e-5)):
        model = make("ae", lr_t_max=4, lr_eta_min=1e-5, lr_cycle=cycle)
        opts = model.configure_optimizers(lr=1e-3, iterations=8)
        lrs = []
        for _ in range(8):
            opts.main[0].step()
            for s in opts.schedulers:
                s.step()
            lrs.append(opts.main[0].param_groups[0]["lr"])
        assert math.isclose(lrs[3], 1e-5, rel_tol=1e-6)
        assert math.isclose(lrs[7], at_end, rel_tol=1e-6)
    factor = make("factorqvae")
    opts = factor.configure_optimizers(lr=1e-3, iterations=10)
    assert len(opts.schedulers) == 2 and opts.discriminator is not None


def test_unknown_model_name():
    with pytest.raises(ValueError, match="known models.*factorqvae"):
        build_model("factorqvea", in_channels=3, image_size=32, num_latents=4)


@pytest.mark.parametrize(
    "name,hparams,error,match",
    [
        ("qlae_hsu2023", {"tau_rate": 1e-5}, TypeError, "tau_rate.*an option of.*factorqvae"),
        ("factorqvae", {"kl_wieght": 1.0}, TypeError, "kl_wieght"),
        ("vae", {"disc_lr": 1e-3}, TypeError, "disc_lr"),
        ("factorqvae", {"kl_weight": -1.0}, ValueError, "kl_weight"),
        ("factorqvae", {"repr": "mean"}, ValueError, "repr"),
        ("vae", {"repr": "index"}, ValueError, "repr"),
        ("qvae", {"tau_init": 0.0}, ValueError, "tau_init"),
        ("qvae", {"codebook_scale": 0.0}, ValueError, "codebook_scale"),
        ("factorqvae", {"codebook": "shared"}, ValueError, "codebook"),
        ("dvae", {"codebook": "per_dim"}, ValueError, "codebook must be 'global' for dvae"),
        ("ae", {"lr_cycle": "twice"}, ValueError, "lr_cycle"),
        ("ae", {"weight_decay": 0.1}, ValueError, "optimizer"),
        ("qlae_hsu2023", {"lr_t_max": 10}, ValueError, "lr_schedule"),
        ("qlae_hsu2023", {"codebook_init": "uniform"}, ValueError, "codebook_init"),
        ("ae", {"arch": "resnet"}, ValueError, "arch"),
        ("ae", {"image_size": 40}, ValueError, "multiple of 16"),
        ("ae", {"num_latents": 0}, ValueError, "num_latents"),
    ],
)
def test_bad_hparams(name, hparams, error, match):
    args = {"in_channels": 3, "image_size": 32, "num_latents": 4, "arch": "small"}
    with pytest.raises(error, match=match):
        build_model(name, **{**args, **hparams})


def test_bad_input_shape():
    model = make("ae")
    with pytest.raises(ValueError, match="expects images"):
        model(torch.zeros(2, 1, 32, 32))


def test_published_settings_build():
    models = {m for m, _ in PUBLISHED}
    assert models == set(MODELS)
    for (name, dataset), entry in PUBLISHED.items():
        assert set(entry["hparams"]) <= set(hparam_names(name)), (name, dataset)
        assert entry["num_latents"] in (10, 12, 14, 18)
        if dataset == "shapes3d":
            build_model(name, in_channels=3, image_size=32, num_latents=4, arch="small",
                        **entry["hparams"])  # fmt: skip
    ref = published("factorqvae", "shapes3d")
    assert (ref["batch_size"], ref["iterations"]) == (512, 50_000)
    assert ref["hparams"]["kl_weight"] == 1e-3 and ref["hparams"]["gamma"] == 1e-4
    assert ref["hparams"]["tau_rate"] == 2e-5 and not ref["untuned"]
    clean = published("qvae", "isaac3d", preset="clean")
    assert clean["hparams"]["tau_rate"] == 1 / 100_000
    assert clean["hparams"]["lr_cycle"] == "single" and clean["hparams"]["lr_t_max"] == 100_000
    assert published("factorqvae", "dsprites")["untuned"]
    assert published("qlae_hsu2023", "mpi3d")["hparams"]["weight_decay"] == 0.001
    with pytest.raises(ValueError, match="no published settings"):
        published("factorqvae", "celeba")


def test_devae_stage_chain_and_loss():
    model = make("devae", betas=[1.0, 2.0, 4.0], scale=0.5, recon="gaussian")
    x = toy_images(4)
    first = model.stages(x)
    assert all(torch.equal(mu, first[0][0]) for mu, _ in first), "transforms start at identity"
    with torch.no_grad():
        model.mu_gain.normal_()
        model.logvar_shift.normal_()
    (mu0, lv0), (mu1, lv1), (mu2, lv2) = model.stages(x)
    g, s = model.mu_gain.detach(), model.logvar_shift.detach()
    assert torch.allclose(mu1, mu0 * g[0].exp()) and torch.allclose(lv1, lv0 + s[0])
    assert torch.allclose(mu2, mu1 * g[1].exp()) and torch.allclose(lv2, lv1 + s[1])
    torch.manual_seed(3)
    terms = model(x)
    torch.manual_seed(3)
    expected = 0.0
    for k, (beta, (mu, lv)) in enumerate(zip((1.0, 2.0, 4.0), model.stages(x))):
        z = mu + torch.randn_like(mu) * (0.5 * lv).exp()
        logits = model.decoder(torch.cat([z, model.stage_embedding.weight[k].expand(4, -1)], 1))
        recon = (torch.sigmoid(logits) - x).pow(2).sum() / 4
        kl = (0.5 * (mu**2 + lv.exp() - lv - 1)).mean(0).sum()
        expected = expected + 0.5**k * (recon + beta * kl)
    assert torch.allclose(terms["loss"], expected, rtol=1e-5)
    assert torch.equal(model.representation(x), model.stages(x)[0][0].detach())


def test_dlib_arch_at_64():
    model = build_model("devae", in_channels=1, image_size=64, num_latents=10)
    assert model.arch == "dlib" and model.pixels == "unit"
    x = toy_images(2, 64, 1)
    assert model.reconstruct(x).shape == (2, 1, 64, 64)
    assert model.encoder.net[8].kernel_size == (4, 4)


# ------------------------------------------------------------------------------ DiD-R


def test_did_r_pairs_change_exactly_one_code():
    torch.manual_seed(0)
    c, c_pair, k = sample_pairs(512, 6)
    assert c.min() >= -1 and c.max() <= 1 and c_pair.min() >= -1 and c_pair.max() <= 1
    changed_entries = c != c_pair
    assert torch.equal(changed_entries.sum(1), torch.ones(512, dtype=torch.long))
    assert torch.equal(changed_entries.float().argmax(1), k)
    delta = (c_pair - c).gather(1, k[:, None]).abs()
    assert delta.min() >= 0.5 - 1e-6 and delta.max() <= 1 + 1e-6
    assert set(k.tolist()) == set(range(6))


def test_did_r_gradient_penalty():
    torch.manual_seed(0)
    real, fake = torch.rand(5, 1, 4, 4, dtype=torch.float64), torch.rand(5, 1, 4, 4).double()
    eps = torch.rand(5, 1, 1, 1, dtype=torch.float64)
    # a linear critic has gradient w everywhere: GP = (||w|| - 1)^2
    w = torch.randn(16, dtype=torch.float64)
    gp = gradient_penalty(lambda im: im.flatten(1) @ w, real, fake, eps)
    assert torch.allclose(gp, (w.norm() - 1) ** 2)
    # its gradient in the critic's parameters matches finite differences (double backward)
    w1 = torch.randn(16, 3, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def penalty(a, b):
        return gradient_penalty(lambda im: torch.tanh(im.flatten(1) @ a) @ b, real, fake, eps)

    assert torch.autograd.gradcheck(penalty, (w1, w2))


def test_did_r_contrastive_loss():
    h = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0], [-1.0, 0.0]]))
    labels = torch.tensor([0, 0, 1, 1, 2])  # the last anchor has no positive and is skipped
    sim = h @ h.T / 0.1
    expected = []
    for m, p in ((0, 1), (1, 0), (2, 3), (3, 2)):
        others = [a for a in range(5) if a != m]
        expected.append(-(sim[m, p] - torch.logsumexp(sim[m, others], 0)))
    assert torch.allclose(supervised_contrastive(h, labels, 0.1), torch.stack(expected).mean())
    assert supervised_contrastive(h, torch.arange(5)) == 0


def xy_squares(c: torch.Tensor, size: int = 32, side: int = 6) -> torch.Tensor:
    """A fixed XYSquares-style generator: code ``i`` in [-1, 1] slides square ``i`` along its
    own horizontal band, so a pair differing in code ``k`` differs in band ``k`` only."""
    x = torch.zeros(len(c), 3, size, size)
    band = size // c.shape[1]
    cols = ((c + 1) / 2 * (size - side)).round().long()
    for b in range(len(c)):
        for i in range(c.shape[1]):
            x[b, :, i * band + 1 : i * band + 1 + side, cols[b, i] : cols[b, i] + side] = 1.0
    return x


def test_did_r_difference_loss_falls_on_fixed_generator_outputs():
    model = make("did_r")
    torch.manual_seed(0)
    c, c_pair, k = sample_pairs(32, L)
    x1, x2 = xy_squares(c), xy_squares(c_pair)
    assert all((x1[i] != x2[i]).any() for i in range(32))
    opt = torch.optim.Adam(model.difference.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = model.difference_terms(x1, x2, k, frozen=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses


def grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def test_did_r_each_network_gets_its_own_gradient():
    model = make("did_r", lambda_h=0.5, lambda_enc=3.0)
    x = toy_images(8)
    model.set_step(10)  # a generator step (n_critic 5)
    torch.manual_seed(3)
    model(x)["loss"].backward()
    got = {name: grads(getattr(model, name)) for name in ("encoder", "difference", "decoder")}
    # the three losses of the spec, separately, from the same random draws
    torch.manual_seed(3)
    c, c_pair, k = sample_pairs(8, L)
    n = torch.randn(8, 0)
    x1, x2 = model.generate(c, n), model.generate(c_pair, n)
    eps = torch.rand(8, 1, 1, 1)

    def critic_value(im):
        return model.encoder(im)[:, 0]

    def enc_loss(im):
        return (model.encoder(im)[:, 1:] - c).pow(2).sum(1).mean()

    fake = x1.detach()
    gp = gradient_penalty(critic_value, x, fake, eps)
    critic = critic_value(fake).mean() - critic_value(x).mean() + 10 * gp + 3.0 * enc_loss(fake)
    diff = model.difference_terms(fake, x2.detach(), k, frozen=False)
    gen = -critic_value(x1).mean() + 0.5 * model.difference_terms(x1, x2, k, frozen=False)
    gen = gen + 3.0 * enc_loss(x1)
    for name, loss in (("encoder", critic), ("difference", diff), ("decoder", gen)):
        module = getattr(model, name)
        expected = torch.autograd.grad(loss, list(module.parameters()), retain_graph=True)
        assert set(got[name]) == {n for n, _ in module.named_parameters()}, name
        for (pname, _), g in zip(module.named_parameters(), expected):
            assert torch.allclose(got[name][pname], g, rtol=1e-4, atol=1e-6), (name, pname)


def test_did_r_generator_moves_every_n_critic_steps():
    model = make("did_r", n_critic=3)
    opts = model.configure_optimizers(lr=1e-3, iterations=10)
    assert len(opts.main) == 1 and opts.discriminator is None and opts.schedulers == []
    assert opts.main[0].defaults["betas"] == (0.0, 0.9)
    x = toy_images(8)
    for it in range(6):
        model.set_step(it)
        before, others = snapshot(model.decoder), snapshot(model.difference)
        terms, _ = train_step(model, opts, x)
        assert bool(changed(before, model.decoder)) == (it % 3 == 0), it
        assert changed(others, model.difference)
        assert {"critic_loss", "wdist", "gp", "enc_loss", "diff_loss", "gen_loss"} <= set(terms)
    state = opts.main[0].state
    assert all(state[p]["step"] == 2 for p in model.decoder.parameters())
    assert all(state[p]["step"] == 6 for p in model.encoder.parameters())
    # zeroed (not None) gradients off a generator step still leave the generator alone
    model.set_step(7)
    for p in model.decoder.parameters():
        p.grad = torch.zeros_like(p)
    model.before_optimizer_step()
    assert all(p.grad is None for p in model.decoder.parameters())


def test_did_r_representation_is_the_samples_encoder():
    model = make("did_r", difference_loss="classify")
    x = toy_images(4)
    model.eval()
    out = model.encoder(x)
    model.train()
    assert torch.equal(model.representation(x), out[:, 1:].detach())
    assert model.traversal_values(3)[0].tolist() == [-1.0, 0.0, 1.0]
    assert model.difference_head.out_features == L
    assert torch.isfinite(model(x)["diff_loss"])


def test_a_configuration_builds_its_method_with_its_defaults_under_the_users():
    for name, (method, _) in CONFIGURATIONS.items():
        model = make(name)
        assert type(model) is METHODS[method] and model.name == name
    q = make("qlae_factorqvae", pixels="unit", num_values=8)
    assert q.pixels == "unit" and q.latent.codebook.shape == (L, 8)
    assert q.optim.optimizer == "adam" and q.repr_kind == "index"


def test_pixels_picks_the_reconstruction_loss():
    x = torch.rand(2, 3, 32, 32)
    bce, mse = make("ae", pixels="unit"), make("ae")  # one seed: the same weights
    out = bce.decoder(bce.encoder(x))
    assert torch.allclose(bce(x)["recon"], F.binary_cross_entropy_with_logits(out, x))
    out = mse.decoder(mse.encoder(x - 0.5))
    assert torch.allclose(mse(x - 0.5)["recon"], F.mse_loss(out, x - 0.5))
    assert "pixels" not in hparam_names("devae")  # its loss needs [0, 1] pixels
    with pytest.raises(TypeError, match="pixels"):
        make("devae", pixels="centered")


@pytest.mark.parametrize("name", ALL)
def test_every_model_trains_a_step_compiled(name):
    """``--compile`` (``nn.Module.compile``, as the trainer calls it) runs every model's training
    step, the critics' gradient penalty (a second derivative) included, and gives the eager
    step's loss."""
    x = pixels_for(make(name), toy_images(8))
    losses = []
    for compiled in (False, True):
        model = make(name)
        opts = model.configure_optimizers(1e-3, 10, False)
        if compiled:
            torch._dynamo.reset()
            model.compile(backend="aot_eager")
        torch.manual_seed(1)
        terms, _ = train_step(model, opts, x)
        losses.append(terms["loss"].item())
    assert math.isclose(*losses, rel_tol=1e-4), losses

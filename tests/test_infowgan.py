"""InfoWGAN-GP and QLInfoWGAN-GP (baselines spec §4): the gradient penalty, the 5:1 schedule,
the codebook owned by the generator, the quantized prior, and learning on tiny data."""

from __future__ import annotations

import pytest
import torch
from test_models import make, toy_images, train_step
from test_train_tiny import single_thread  # noqa: F401

from fqvae.models.wgan import gradient_penalty

GANS = ["infowgan_gp", "qlinfowgan_gp"]


def test_gradient_penalty_matches_finite_differences():
    torch.manual_seed(0)
    a, b = torch.randn(12, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)

    def critic(im):
        return torch.tanh(im.flatten(1) @ a) @ b

    real, fake = torch.rand(3, 3, 2, 2, dtype=torch.float64), torch.rand(3, 3, 2, 2).double()
    eps = torch.rand(3, 1, 1, 1, dtype=torch.float64)
    mixed = eps * real + (1 - eps) * fake
    step, grads = 1e-6, torch.zeros(3, 12, dtype=torch.float64)
    for i in range(12):  # central differences of V at each interpolate
        delta = torch.zeros(12, dtype=torch.float64)
        delta[i] = step
        up = critic((mixed.flatten(1) + delta).view_as(mixed))
        down = critic((mixed.flatten(1) - delta).view_as(mixed))
        grads[:, i] = (up - down) / (2 * step)
    expected = (grads.norm(dim=1) - 1).pow(2).mean()
    assert torch.allclose(gradient_penalty(critic, real, fake, eps), expected, atol=1e-8)


@pytest.mark.parametrize("name", GANS)
def test_generator_steps_once_every_five_critic_steps(name):
    model = make(name)
    assert model.n_critic == 5
    opts = model.configure_optimizers(lr=1e-3, iterations=20)
    x = toy_images(8)
    moved = []
    for it in range(11):
        model.set_step(it)
        before = [p.detach().clone() for p in model.decoder.parameters()]
        critic_before = [p.detach().clone() for p in model.encoder.parameters()]
        train_step(model, opts, x)
        moved.append(any(not torch.equal(b, p) for b, p in zip(before, model.decoder.parameters())))
        assert any(not torch.equal(b, p) for b, p in zip(critic_before, model.encoder.parameters()))
    assert moved == [it % 5 == 0 for it in range(11)]


def test_codebook_is_moved_only_by_the_generator():
    model = make("qlinfowgan_gp")
    opts = model.configure_optimizers(lr=1e-3, iterations=10)
    x = toy_images(8)
    codebook = model.latent.codebook
    model.set_step(1)  # a critic-only batch: its loss reads the codebook detached
    model(x)["loss"].backward()
    assert codebook.grad is None
    start = codebook.detach().clone()
    train_step(model, opts, x)
    assert torch.equal(codebook, start)
    model.set_step(5)  # a generator batch: the generator's loss reaches the codebook
    model.zero_grad(set_to_none=True)
    model(x)["loss"].backward()
    assert codebook.grad is not None and codebook.grad.abs().sum() > 0
    train_step(model, opts, x)
    assert not torch.equal(codebook, start)
    # the codebook sits in the unregularized (plain Adam) group of the split optimizer
    adam_params = {id(p) for p in opts.main[1].param_groups[0]["params"]}
    assert id(codebook) in adam_params


def test_prior_samples_lie_on_the_codebook():
    model = make("qlinfowgan_gp")
    with torch.no_grad():
        model.latent.codebook.add_(torch.randn_like(model.latent.codebook) * 0.1)
    z = model.prior(2000, torch.device("cpu"))
    for j in range(model.num_latents):
        values = set(model.latent.codebook[j].tolist())
        assert set(z[:, j].tolist()) == values  # on the codebook, and every value drawn
    plain = make("infowgan_gp").prior(2000, torch.device("cpu"))
    assert plain.min() >= 0 and plain.max() <= 1 and plain.std() > 0.25


def _scores(model, x: torch.Tensor) -> tuple[float, float]:
    """``(R^2, wdist)``: the share of the prior's variance that the critic-encoder recovers
    from G's images (256 fixed draws), and ``mean V(real) - mean V(G(z))``."""
    torch.manual_seed(123)
    with torch.no_grad():
        z = model.prior(256, torch.device("cpu"))
        out = model.encoder(model.generate(z))
        code, _ = model.read_code(out[:, 1:], grad_to_codebook=False)
        wdist = model.encoder(x)[:, 0].mean() - out[:, 0].mean()
    return float(1 - ((code - z) ** 2).mean() / z.var(0).mean()), float(wdist)


def _train(model, x: torch.Tensor, steps: int, lr: float) -> None:
    opts = model.configure_optimizers(lr=lr, iterations=steps)
    torch.manual_seed(1)
    for it in range(steps):
        model.set_step(it)
        train_step(model, opts, x)


@pytest.mark.parametrize("name", GANS)
def test_critic_learns_to_separate_real_from_generated(name):
    model, x = make(name), toy_images(16)
    _, before = _scores(model, x)
    _train(model, x, 60, 2e-4)
    _, after = _scores(model, x)
    assert after > before + 1.0, (before, after)


@pytest.mark.slow
def test_quantized_encoder_learns_to_read_the_generator():
    """Against the untrained network in the same test: after 600 batches the critic-encoder of
    QLInfoWGAN-GP recovers most of the codes' variance from G's images, where the untrained one
    recovers none. (InfoWGAN-GP's continuous read needs far more batches than a test affords;
    the study measures it.)"""
    model, x = make("qlinfowgan_gp"), toy_images(16)
    r2_before, _ = _scores(model, x)
    _train(model, x, 600, 1e-3)
    r2_after, _ = _scores(model, x)
    assert r2_before < 0.05 and r2_after > 0.4, (r2_before, r2_after)


# ----------------------------------------------------------------------------- the trainer


def _config(out, steps: int):
    from fqvae.training import presets
    from fqvae.training.config import Config

    cfg = Config(out=str(out))
    cfg.model.name, cfg.data.name = "qlinfowgan_gp", "toy"
    cfg.train.recipe, cfg.train.iterations, cfg.train.batch = "cpu", steps, 8
    cfg.system.device = "cpu"  # bitwise resume and gloo DDP, also on a machine with one GPU
    cfg.log.progress, cfg.log.tensorboard, cfg.log.ckpt_every = False, False, 0
    cfg.eval.final_num_train = 0
    presets.resolve(cfg)
    return cfg


def test_resume_is_exact(tmp_path):
    from fqvae.training import checkpoint
    from fqvae.training.trainer import train

    torch.manual_seed(0)
    train(_config(tmp_path / "full", 8))
    torch.manual_seed(0)
    cfg = _config(tmp_path / "part", 8)
    cfg.train.iterations = 3  # stop early, then continue the same run to 8
    train(cfg)
    cfg.train.iterations = 8
    train(cfg, resume=True)
    full = checkpoint.load(tmp_path / "full" / checkpoint.CHECKPOINT)["model"]
    part = checkpoint.load(tmp_path / "part" / checkpoint.CHECKPOINT)["model"]
    assert full.keys() == part.keys()
    for key, value in full.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, part[key]), key
        else:  # the quantizer's extra state (its temperature schedule)
            assert value == part[key], key


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    from fqvae.training.trainer import train

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )  # fmt: skip
    torch.set_num_threads(1)
    torch.manual_seed(100 + rank)  # different initial weights: rank 0's are broadcast
    train(_config(out, 6))


def test_two_processes_stay_in_sync(tmp_path):
    import torch.multiprocessing as mp
    from test_train_ddp import _free_port

    from fqvae.training import checkpoint

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    saved = checkpoint.load(tmp_path / checkpoint.CHECKPOINT)
    assert saved["world_size"] == 2 and saved["step"] == 6
    codebook = saved["model"]["latent.codebook"]
    assert not torch.equal(codebook[0], torch.linspace(-0.5, 0.5, 10))  # the generator moved it

"""A tiny model and dataset implementing the trainer's interfaces, and tests of the step itself.

``TinyModel`` follows ``fqvae.models.base`` with a discriminator (the split-batch step). With
``noise=True`` it draws from the global RNG in training, so exact resume must restore RNG
state; with ``noise=False`` every loss term is a per-sample mean, so data-parallel training
must match one process exactly (up to float summation order).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from fqvae.data.dataset import GroundTruthDataset
from fqvae.data.factors import FactorTable
from fqvae.models.base import DisentanglementModel, Optimizers
from fqvae.training.batches import Batches
from fqvae.training.config import Config
from fqvae.training.distributed import Dist, shard
from fqvae.training.step import train_step

SIDE = 8


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread: tiny ops on a shared, busy CPU run much faster without OpenMP."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_dataset() -> GroundTruthDataset:
    """8x8 gray images of a vertical bar: factor 0 its column, factor 1 its brightness."""
    sizes = (8, 8)
    classes = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1)
    classes = classes.reshape(-1, 2)
    images = np.zeros((len(classes), SIDE, SIDE, 1), np.uint8)
    for i, (col, level) in enumerate(classes):
        images[i, :, col, 0] = 60 + 25 * level
    table = FactorTable(("column", "level"), sizes, tuple(np.arange(s, dtype=float) for s in sizes))
    return GroundTruthDataset("tiny", images, table, data_source="procedural")


class TinyModel(DisentanglementModel):
    name = "tiny"
    pixels = "centered"
    discrete = True

    def __init__(self, latents: int = 4, noise: bool = True, nan_at: int | None = None) -> None:
        super().__init__()
        d = SIDE * SIDE
        self.encoder = nn.Linear(d, latents)
        self.decoder = nn.Linear(latents, d)
        self.disc = nn.Sequential(nn.Linear(latents, 16), nn.ReLU(), nn.Linear(16, 2))
        self.noise = noise
        self.nan_at = nan_at
        self.step = 0

    @property
    def discriminator(self) -> nn.Module:  # the base class's attribute would shadow a submodule
        return self.disc

    def set_step(self, it: int) -> None:
        self.step = it

    def encode_latents(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def decode_latents(self, z: Tensor) -> Tensor:
        return self.decoder(z).view(-1, 1, SIDE, SIDE)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        z = self.encode_latents(x)
        if self.noise:
            z = z + 0.1 * torch.randn_like(z)
        recon = nn.functional.mse_loss(self.decode_latents(z), x)
        self.discriminator.requires_grad_(False)
        logits = self.discriminator(z)
        self.discriminator.requires_grad_(True)
        tc = (logits[:, 0] - logits[:, 1]).mean()
        loss = recon + 1e-2 * tc
        if self.nan_at is not None and self.step >= self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "recon": recon, "tc_raw": tc, "codes": z.detach()}

    def discriminator_loss(self, codes: Tensor, x_other: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            other = self.encode_latents(x_other).flip(1)
        real, fake = self.discriminator(codes), self.discriminator(other)
        ce = nn.functional.cross_entropy
        loss = 0.5 * (
            ce(real, torch.zeros(len(real), dtype=torch.long, device=real.device))
            + ce(fake, torch.ones(len(fake), dtype=torch.long, device=fake.device))
        )
        acc = 0.5 * ((real.argmax(1) == 0).float().mean() + (fake.argmax(1) == 1).float().mean())
        return {"loss": loss, "disc_acc": acc}

    def configure_optimizers(self, lr: float, iterations: int, fused: bool = False) -> Optimizers:
        own = [*self.encoder.parameters(), *self.decoder.parameters()]
        main = torch.optim.Adam(own, lr=lr, fused=fused)
        disc = torch.optim.Adam(self.discriminator.parameters(), lr=lr, fused=fused)
        scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, iterations) for o in (main, disc)]
        return Optimizers([main], disc, scheds)

    def representation(self, x: Tensor) -> Tensor:
        edges = torch.linspace(-0.8, 0.8, 7, device=x.device)
        return torch.bucketize(torch.tanh(self.encode_latents(x)), edges)

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode_latents(self.encode_latents(x))

    def traversal_values(self, steps: int) -> Tensor:
        return torch.linspace(-2, 2, steps).repeat(self.encoder.out_features, 1)


def tiny_config(out, iterations: int = 12) -> Config:
    """A resolved config for the tiny model: no evaluation, no progress bar, CPU."""
    cfg = Config(out=str(out))
    cfg.model.name, cfg.model.latents, cfg.data.name, cfg.data.split = "tiny", 4, "tiny", "train"
    cfg.train.iterations, cfg.train.batch, cfg.train.lr = iterations, 8, 1e-2
    cfg.system.device, cfg.system.amp = "cpu", "off"
    cfg.log.every, cfg.log.ckpt_every, cfg.log.tensorboard, cfg.log.progress = 1, 0, False, False
    cfg.eval.final_num_train, cfg.eval.images = 0, False
    return cfg


def test_batches_are_a_pure_function_of_seed_and_step():
    idx = np.arange(10, 30)
    a, b = Batches(idx, 8, seed=3), Batches(idx, 8, seed=3)
    seen = np.concatenate([a(s) for s in range(5)])  # 40 draws = two epochs
    assert np.array_equal(np.sort(seen[:20]), idx) and np.array_equal(np.sort(seen[20:]), idx)
    assert np.array_equal(b(4), a(4)) and np.array_equal(b(2), a(2))
    assert not np.array_equal(Batches(idx, 8, seed=4)(0), a(0))


def test_shards_reassemble_the_split_halves():
    batch = np.arange(8)
    parts = [shard(batch, Dist(r, 2, r)) for r in range(2)]
    assert [p.tolist() for p in parts] == [[0, 1, 4, 5], [2, 3, 6, 7]]
    firsts = np.concatenate([np.split(p, 2)[0] for p in parts])
    assert np.array_equal(firsts, batch[:4])


def test_split_batch_step_updates_both_optimizers():
    torch.manual_seed(0)
    model = TinyModel()
    opt = model.configure_optimizers(1e-2, 10)
    x = tiny_dataset().batch(np.arange(8), "cpu")
    before = {n: p.clone() for n, p in model.named_parameters()}
    terms = train_step(model, opt, x, 0, torch.autocast("cpu", enabled=False), Dist())
    assert set(terms) == {"loss", "recon", "tc_raw", "disc_loss", "disc_acc"}
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())
    assert opt.schedulers[0].last_epoch == 1

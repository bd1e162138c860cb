"""Drop ``fqvae.ScalarQuantize`` into an existing autoencoder: a two-line change.

The model below is an ordinary small convolutional VAE written without fqvae: its bottleneck,
``GaussianBottleneck``, adds learned Gaussian noise to the latents and returns a KL penalty. To
give it quantized latents (a QLAE-style per-latent codebook of 10 learned values with a
straight-through estimator and the quantization/commitment losses), change two lines::

    - self.bottleneck = GaussianBottleneck(latents)
    + self.bottleneck = fqvae.ScalarQuantize(10, latents, codebook="per_dim")

    - z_hat, aux_loss = self.bottleneck(z)
    + z_hat, _, aux_loss, *_ = self.bottleneck(z)

Both versions live side by side in ``AutoEncoder`` behind the ``--bottleneck`` flag; the two
lines are marked ``[fqvae 1/2]`` and ``[fqvae 2/2]``. The script trains on procedurally drawn
shapes (squares, discs and triangles at random positions, sizes and intensities), on CPU, and
prints the reconstruction loss and, for the quantized model, the codebook perplexity.

    python examples/drop_in_vae.py                        # quantized, 300 steps
    python examples/drop_in_vae.py --bottleneck gaussian  # the original VAE
    python examples/drop_in_vae.py --bottleneck both      # one after the other

On a busy machine, ``--threads 1`` avoids thread oversubscription (often several times faster).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.nn import functional as F

import fqvae

SIZE = 32  # image side


# ---------------------------------------------------------------------------------- the data


def make_shapes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` grayscale ``SIZE x SIZE`` images in [0, 1], and their factors (shape, x, y, size,
    intensity). Every image holds one square, disc or triangle."""
    g = torch.Generator().manual_seed(seed)
    shape = torch.randint(0, 3, (n,), generator=g)
    scale = 0.15 + 0.15 * torch.rand(n, generator=g)  # half-size, in image units
    cx = scale + (1 - 2 * scale) * torch.rand(n, generator=g)
    cy = scale + (1 - 2 * scale) * torch.rand(n, generator=g)
    intensity = 0.5 + 0.5 * torch.rand(n, generator=g)
    coords = (torch.arange(SIZE) + 0.5) / SIZE
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    dx = (xx - cx[:, None, None]) / scale[:, None, None]
    dy = (yy - cy[:, None, None]) / scale[:, None, None]
    square = (dx.abs() <= 1) & (dy.abs() <= 1)
    disc = dx**2 + dy**2 <= 1
    triangle = (dy <= 1) & (dy >= 2 * dx.abs() - 1)
    masks = torch.stack([square, disc, triangle], 1)[torch.arange(n), shape]
    images = (masks.float() * intensity[:, None, None])[:, None]
    factors = torch.stack([shape.float(), cx, cy, scale, intensity], 1)
    return images, factors


# ------------------------------------------------------------------------- the original model


class GaussianBottleneck(nn.Module):
    """The VAE's own continuous bottleneck: ``z + sigma * eps`` with a learned per-latent sigma
    in training, ``z`` in eval, and ``beta * KL(N(z, sigma^2) || N(0, 1))`` as the extra loss."""

    def __init__(self, latents: int, beta: float = 1e-3) -> None:
        super().__init__()
        self.log_sigma = nn.Parameter(torch.full((latents,), -1.0))
        self.beta = beta

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = self.log_sigma.exp()
        kl = 0.5 * (z**2 + sigma**2 - 1 - 2 * self.log_sigma).sum(1).mean()
        z_hat = z + sigma * torch.randn_like(z) if self.training else z
        return z_hat, self.beta * kl


class AutoEncoder(nn.Module):
    def __init__(self, latents: int = 8, bottleneck: str = "fqvae") -> None:
        super().__init__()
        self.quantized = bottleneck == "fqvae"
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(),  # 16 x 16
            nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(),  # 8 x 8
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),  # 4 x 4
            nn.Flatten(),
            nn.Linear(32 * 16, latents),
            nn.BatchNorm1d(latents, affine=False),  # standardized latents
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(latents, 32 * 16), nn.ReLU(),
            nn.Unflatten(1, (32, 4, 4)),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 4, 2, 1),  # logits
        )  # fmt: skip
        if not self.quantized:
            self.bottleneck = GaussianBottleneck(latents)
        else:
            self.bottleneck = fqvae.ScalarQuantize(10, latents, codebook="per_dim")  # [fqvae 1/2]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        if not self.quantized:
            z_hat, aux_loss = self.bottleneck(z)
        else:
            z_hat, _, aux_loss, *_ = self.bottleneck(z)  # [fqvae 2/2]
        return self.decoder(z_hat), aux_loss


# ------------------------------------------------------------------------------- training


def train(bottleneck: str, steps: int, batch: int, seed: int, log_every: int) -> float:
    torch.manual_seed(seed)
    train_x, _ = make_shapes(4096, seed=seed)
    test_x, _ = make_shapes(512, seed=seed + 1)
    model = AutoEncoder(bottleneck=bottleneck)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    print(f"\n== {bottleneck} bottleneck: {model.bottleneck}")
    start = time.perf_counter()
    for step in range(1, steps + 1):
        x = train_x[torch.randint(0, len(train_x), (batch,))]
        logits, aux_loss = model(x)
        recon = F.binary_cross_entropy_with_logits(logits, x)
        opt.zero_grad(set_to_none=True)
        (recon + aux_loss).backward()
        opt.step()
        if step % log_every == 0 or step == steps:
            line = f"step {step:4d}  recon(bce) {recon.item():.4f}  aux {aux_loss.item():.5f}"
            if model.quantized:
                line += "  " + codebook_stats(model, test_x)
            print(line, flush=True)
    model.eval()
    with torch.no_grad():
        logits, _ = model(test_x)
        test_recon = F.binary_cross_entropy_with_logits(logits, test_x).item()
    elapsed = time.perf_counter() - start
    summary = f"held-out recon(bce) {test_recon:.4f} after {steps} steps in {elapsed:.1f} s"
    if model.quantized:
        summary += "  " + codebook_stats(model, test_x)
    print(summary)
    return test_recon


@torch.no_grad()
def codebook_stats(model: AutoEncoder, x: torch.Tensor) -> str:
    """Codebook perplexity (of the index histogram, pooled over latents) and the fraction of the
    latents x values table in use, on held-out images."""
    was_training = model.training
    model.eval()
    out = model.bottleneck(model.encoder(x))
    model.train(was_training)
    used = (out.usage > 0).float().mean().item()
    return f"perplexity {out.perplexity.item():5.2f}/{model.bottleneck.num_values}  used {used:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bottleneck", choices=["fqvae", "gaussian", "both"], default="fqvae")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    kinds = ["gaussian", "fqvae"] if args.bottleneck == "both" else [args.bottleneck]
    for kind in kinds:
        train(kind, args.steps, args.batch, args.seed, max(1, min(args.log_every, args.steps)))


if __name__ == "__main__":
    main()

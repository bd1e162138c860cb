"""β-VAE as Hsu et al. write it beside QLAE (QLAE spec §7): its own KL normalisation, the
conv/style backbone, BCE with logits on ``[0, 1]`` pixels and their split optimizer (AdamW with
element-wise clipping on the weights, Adam on biases, constant learning rate). Their AE and BioAE
change only defaults, so they are rows of :mod:`fqvae.models.configurations`."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from fqvae.models.betatcvae import SoftplusGaussian
from fqvae.models.common import check_choice, check_nonneg


class VAEHsu(SoftplusGaussian):
    """Loss ``BCE_mean + (L / (C * H * W)) * beta * KL_mean`` with
    ``KL_mean = mean_j [-log sigma_j + (mu_j^2 + sigma_j^2 - 1) / 2]`` (means over latents and
    batch), i.e. the per-image sums divided by ``C * H * W``. Encoder head ``2L``: ``mu`` then
    ``sigma = softplus(raw)``; training decodes a sample, eval ``mu``. No weight decay.
    ``repr``: ``"mean"`` (the reference) or ``"sample"``."""

    name = "vae_hsu2023"

    def __init__(
        self,
        *,
        num_latents: int,
        arch: str = "qlae",
        beta: float = 3.0,
        repr: str = "mean",
        **base: Any,
    ) -> None:
        super().__init__(num_latents=num_latents, arch=arch, head_features=2 * num_latents, **base)
        check_nonneg(beta=beta)
        self.beta = float(beta)
        self.repr_kind = check_choice("repr", repr, ("mean", "sample"))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        mu, sigma, _, recon = self.sampled_recon(x)
        kl = (-sigma.log() + 0.5 * (mu.square() + sigma.square() - 1.0)).mean()
        loss = recon + (self.num_latents / x[0].numel()) * self.beta * kl
        return {"loss": loss, "recon": recon.detach(), "kl": kl.detach()}

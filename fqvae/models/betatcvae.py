"""beta-TCVAE (Chen et al. 2018) as configured in Hsu et al.'s code: minibatch-weighted
sampling estimates of MI, TC and dimension-wise KL (baselines spec §1)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from fqvae.models.common import (
    HSU_OPTIM,
    AutoencoderModel,
    GaussianCodes,
    check_choice,
    check_nonneg,
)

LOG_2PI = math.log(2.0 * math.pi)


def log_normal(z: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """Element-wise ``log N(z; mu, sigma^2)`` (broadcasting)."""
    return -0.5 * LOG_2PI - sigma.log() - 0.5 * ((z - mu) / sigma).pow(2)


def mws_decomposition(
    z: Tensor, mu: Tensor, sigma: Tensor, dataset_size: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample ``(MI, TC, DWKL)``, each ``(B,)``, by minibatch-weighted sampling.

    ``z``, ``mu``, ``sigma``: ``(B, D)``. ``dataset_size`` N enters as ``-log N`` in both
    aggregate-posterior estimates; ``None`` drops it (shifts the values, not the gradients).
    """
    pairwise = log_normal(z[:, None], mu[None], sigma[None])  # (i, j, d)
    log_norm = math.log(z.shape[0]) + (math.log(dataset_size) if dataset_size else 0.0)
    log_qz = torch.logsumexp(pairwise.sum(2), dim=1) - log_norm
    log_prod = (torch.logsumexp(pairwise, dim=1) - log_norm).sum(1)
    log_qzx = pairwise.diagonal(dim1=0, dim2=1).sum(0)
    log_pz = log_normal(z, torch.zeros_like(z), torch.ones_like(z)).sum(1)
    return log_qzx - log_qz, log_qz - log_prod, log_prod - log_pz


class SoftplusGaussian(GaussianCodes, AutoencoderModel):
    """Hsu et al.'s Gaussian models: encoder head ``2L``, ``mu`` then ``sigma = softplus(raw)``;
    training decodes a sample, eval decodes ``mu``; BCE with logits on ``[0, 1]`` pixels."""

    pixels = "unit"
    optim_defaults: ClassVar[dict[str, Any]] = HSU_OPTIM  # no weight decay

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(mu, sigma, z)``, each ``(B, L)``; ``z`` is a reparameterised sample."""
        mu, raw = self.encoder(x).chunk(2, dim=1)
        sigma = F.softplus(raw)
        return mu, sigma, mu + sigma * torch.randn_like(mu)

    def sampled_recon(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(mu, sigma, z, recon)``: the posterior of checked images ``x`` and the
        reconstruction loss of decoding the sample ``z``."""
        self.check_input(x)
        mu, sigma, z = self.posterior(x)
        return mu, sigma, z, self.recon_loss(self.decoder(z), x)


class BetaTCVAE(SoftplusGaussian):
    """Loss ``BCE_mean + (mi_weight * MI + beta * TC + dwkl_weight * DWKL) / (C * H * W)``
    (means over the batch). Encoder head ``2L``: ``mu`` then ``sigma = softplus(raw)``; training
    decodes a sample, eval decodes ``mu``. Defaults: Shapes3D (beta 3), Hsu et al.'s optimizer
    (split, no weight decay, clipping at 1, constant lr). ``repr``: ``"mean"`` or ``"sample"``.
    """

    name = "betatcvae"

    def __init__(
        self,
        *,
        num_latents: int,
        arch: str = "qlae",
        beta: float = 3.0,
        mi_weight: float = 1.0,
        dwkl_weight: float = 1.0,
        dataset_size: int | None = None,
        repr: str = "mean",
        **base: Any,
    ) -> None:
        super().__init__(num_latents=num_latents, arch=arch, head_features=2 * num_latents, **base)
        check_nonneg(beta=beta, mi_weight=mi_weight, dwkl_weight=dwkl_weight)
        if dataset_size is not None and (not isinstance(dataset_size, int) or dataset_size < 1):
            raise ValueError(f"dataset_size must be a positive int or None, got {dataset_size!r}")
        self.beta, self.mi_weight = float(beta), float(mi_weight)
        self.dwkl_weight = float(dwkl_weight)
        self.dataset_size = dataset_size
        self.repr_kind = check_choice("repr", repr, ("mean", "sample"))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        mu, sigma, z, recon = self.sampled_recon(x)
        mi, tc, dwkl = (t.mean() for t in mws_decomposition(z, mu, sigma, self.dataset_size))
        reg = (self.mi_weight * mi + self.beta * tc + self.dwkl_weight * dwkl) / x[0].numel()
        return {
            "loss": recon + reg,
            "recon": recon.detach(),
            "mi": mi.detach(),
            "tc": tc.detach(),
            "dwkl": dwkl.detach(),
        }

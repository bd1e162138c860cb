"""DeVAE (Wu et al. 2023): several latent spaces trained at once with a tightening bottleneck,
tied by per-axis transforms, decoded by one shared decoder with a stage embedding
(baselines spec §2; ``erow/disentanglement_lib``, branch ``pytorch``, ``examples/devae.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fqvae.models.common import AutoencoderModel, check_choice, check_nonneg, evaluating


def kl_per_dim_sum(mu: Tensor, logvar: Tensor) -> Tensor:
    """``sum_d mean_b 0.5 (mu^2 + e^logvar - logvar - 1)``."""
    return (0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)).mean(0).sum()


class DeVAE(AutoencoderModel):
    """Stage ``k`` (``K = len(betas)``) has ``mu_k = mu_{k-1} * exp(w1_k)`` and ``logvar_k =
    logvar_{k-1} + w2_k`` (``w`` start at 0), and decodes ``concat(z_k, E[k])``.

    Loss ``sum_k scale^k (R_k + beta_k KL_k)``, fresh noise per stage, ``R_k`` summed over
    pixels and averaged over the batch: ``recon="bernoulli"`` (BCE with logits, dSprites) or
    ``"gaussian"`` (squared error of ``sigmoid(logits)``, Shapes3D). Representation and
    reconstruction use stage 0 (``repr``: ``"mean"`` or ``"sample"``). Reference optimizer:
    Adam at lr 1e-4, constant.
    """

    name = "devae"
    pixels = "unit"
    pixel_options = ("unit",)
    optim_defaults: ClassVar[dict[str, Any]] = {"lr_schedule": "constant"}

    def __init__(
        self,
        *,
        num_latents: int,
        arch: str = "dlib",
        betas: Sequence[float] = (1.0, 10.0, 40.0),
        scale: float = 1.0,
        recon: str = "bernoulli",
        repr: str = "mean",
        **base: Any,
    ) -> None:
        super().__init__(
            num_latents=num_latents,
            arch=arch,
            head_features=2 * num_latents,
            decoder_features=2 * num_latents,
            **base,
        )
        if isinstance(betas, (str, bytes)) or not isinstance(betas, Sequence) or not betas:
            raise ValueError(f"betas must be a non-empty list of numbers, got {betas!r}")
        check_nonneg(scale=scale, **{f"betas[{i}]": b for i, b in enumerate(betas)})
        self.betas = tuple(float(b) for b in betas)
        self.scale = float(scale)
        self.recon_kind = check_choice("recon", recon, ("bernoulli", "gaussian"))
        self.repr_kind = check_choice("repr", repr, ("mean", "sample"))
        stages = len(self.betas)
        self.mu_gain = nn.Parameter(torch.zeros(stages - 1, num_latents))
        self.logvar_shift = nn.Parameter(torch.zeros(stages - 1, num_latents))
        self.stage_embedding = nn.Embedding(stages, num_latents)

    def stages(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``[(mu_k, logvar_k)]`` for every stage, each ``(B, L)``."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        out = [(mu, logvar)]
        for gain, shift in zip(self.mu_gain, self.logvar_shift):
            mu, logvar = mu * gain.exp(), logvar + shift
            out.append((mu, logvar))
        return out

    def decode_stage(self, z: Tensor, stage: int) -> Tensor:
        """Logits ``(B, C, S, S)`` of latents ``z`` ``(B, L)`` at ``stage``."""
        embed = self.stage_embedding.weight[stage].expand(z.shape[0], -1)
        return self.decoder(torch.cat([z, embed], dim=1))

    def stage_recon(self, logits: Tensor, x: Tensor) -> Tensor:
        """Per-image reconstruction loss, summed over pixels, averaged over the batch."""
        if self.recon_kind == "bernoulli":
            per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:
            per_pixel = (torch.sigmoid(logits) - x).pow(2)
        return per_pixel.sum() / x.shape[0]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self.check_input(x)
        loss = x.new_zeros(())
        terms = {}
        for k, (beta, (mu, logvar)) in enumerate(zip(self.betas, self.stages(x))):
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            recon = self.stage_recon(self.decode_stage(z, k), x)
            kl = kl_per_dim_sum(mu, logvar)
            loss = loss + self.scale**k * (recon + beta * kl)
            terms[f"recon_{k}"], terms[f"kl_{k}"] = recon.detach(), kl.detach()
        return {"loss": loss, **terms}

    def decode_latents(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decode_stage(z, 0))

    @torch.no_grad()
    def encode_latents(self, x: Tensor) -> Tensor:
        with evaluating(self):
            return self.stages(x)[0][0]

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        with evaluating(self):
            mu, logvar = self.stages(x)[0]
        if self.repr_kind == "mean":
            return mu
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

"""QLAE (Hsu et al. 2023): one learnable scalar codebook per latent, nearest-value lookup with
a straight-through gradient, quantization and commitment losses (QLAE spec §1-3).

:class:`QLAE` is the method as its authors define it (``qlae_hsu2023``); their global-codebook
ablation (``qlae_global_hsu2023``) and QLAE as the FactorQVAE code configures it
(``qlae_factorqvae``) are rows of :mod:`fqvae.models.configurations`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from fqvae.models.common import (
    HSU_OPTIM,
    AutoencoderModel,
    check_choice,
    check_nonneg,
    codebook_traversal,
    evaluating,
    latents_in_use,
)
from fqvae.quantizers import QuantizeOutput, ScalarQuantize


class QLAE(AutoencoderModel):
    """Encoder head ``L`` -> ``ScalarQuantize(codebook="per_dim", mode="nearest")`` -> decoder.

    Loss ``recon + quant_weight * mean((sg(z) - q)^2) + commit_weight * mean((z - sg(q))^2)``;
    the codebook learns from the quantization term only. Hsu et al.'s setup: ``n_v = 10``
    values per latent at ``linspace(-0.5, 0.5)``, BCE with logits on ``[0, 1]`` pixels, the
    conv/style architecture, and the split optimizer (AdamW weight decay 0.1 with element-wise
    clipping at 1 on the weights, Adam on biases and codebooks) at a constant learning rate.
    ``codebook_init``: ``"linspace"`` or ``"normal"`` (N(0, 1)). ``learn_values=False`` freezes
    the codebook. ``codebook``: ``"per_dim"`` (one row of values per latent) or ``"global"`` (one
    row shared by every latent). ``repr``: ``"value"`` (``z_hat``, the reference) or ``"index"``.
    """

    name = "qlae_hsu2023"
    pixels = "unit"
    discrete = True
    optim_defaults: ClassVar[dict[str, Any]] = {**HSU_OPTIM, "weight_decay": 0.1}

    def __init__(
        self,
        *,
        arch: str = "qlae",
        num_values: int = 10,
        codebook_init: str = "linspace",
        codebook: str = "per_dim",
        quant_weight: float = 0.01,
        commit_weight: float = 0.01,
        learn_values: bool = True,
        repr: str = "value",
        **base: Any,
    ) -> None:
        super().__init__(arch=arch, **base)
        check_choice("codebook_init", codebook_init, ("linspace", "normal"))
        check_choice("codebook", codebook, ("per_dim", "global"))
        check_nonneg(quant_weight=quant_weight, commit_weight=commit_weight)
        self.repr_kind = check_choice("repr", repr, ("value", "index"))
        self.latent = ScalarQuantize(
            num_values,
            self.num_latents,
            codebook=codebook,
            mode="nearest",
            init=codebook_init,
            learnable=learn_values,
            quant_weight=quant_weight,
            commit_weight=commit_weight,
        )

    def quantize(self, x: Tensor) -> tuple[Tensor, QuantizeOutput]:
        """The continuous code ``z`` ``(B, L)`` and the quantizer output for images ``x``."""
        z = self.encoder(x)
        return z, self.latent(z)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self.check_input(x)
        z, q = self.quantize(x)
        recon = self.recon_loss(self.decoder(q.quantized), x)
        return {
            "loss": recon + q.loss,
            "recon": recon.detach(),
            "quant_loss": q.loss.detach(),
            "quant_mse": (z.detach() - q.quantized.detach()).pow(2).mean(),
            "perplexity": q.perplexity,
            "in_use": latents_in_use(q.indices),
        }

    @torch.no_grad()
    def encode_latents(self, x: Tensor) -> Tensor:
        with evaluating(self):
            return self.quantize(x)[1].quantized

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        with evaluating(self):
            q = self.quantize(x)[1]
        return q.quantized if self.repr_kind == "value" else q.indices

    def traversal_values(self, steps: int) -> Tensor:
        return codebook_traversal(self.latent.codebook, self.num_latents, steps)

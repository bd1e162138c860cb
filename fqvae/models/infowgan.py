"""InfoWGAN-GP and QLInfoWGAN-GP (Hsu et al. 2023; baselines spec §4, QLAE spec §6): the
latent-reconstructing half of the QLAE paper.

A generator ``G`` (the style decoder, images ``sigmoid(G(z))``) maps prior codes to images; the
encoder is both the WGAN critic (value ``V``) and the code reader ``E``, trained to recover
``z`` from ``G(z)``. InfoWGAN-GP draws ``z ~ U[0, 1]^L``; QLInfoWGAN-GP gives every latent a
learnable codebook (``linspace(-0.5, 0.5, 10)`` at init), draws each code uniformly from its
latent's values, reads ``E`` through the nearest-value quantizer (the fused
:func:`fqvae.ops.quantize_nearest`), and adds its quantization and commitment losses. The
codebook belongs to the generator: only the generator's loss moves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fqvae import ops
from fqvae.models.common import HSU_OPTIM, check_nonneg, codebook_traversal, evaluating, frozen_call
from fqvae.models.wgan import WGANGP
from fqvae.quantizers import ScalarQuantize


class InfoWGANGP(WGANGP):
    """Per batch ``x`` of real images:

    - critic/encoder: ``mean V(G(z)) - mean V(x) + gp_weight * GP + info_weight * MSE(E(G(z)),
      z)`` on generated images detached from ``G``;
    - generator, every ``n_critic``-th batch, on fresh codes ``z'``: ``-mean V(G(z')) +
      info_weight * MSE(E(G(z')), z')`` with the critic-encoder detached.

    Representation ``E(x)``; a traversal sweeps one code of ``E(x)`` through the prior's range and
    renders it with ``G``. Defaults as published: weights 1 / 10 / 200, Adam(2e-4, b1 0, b2 0.9)
    split as QLAE's (element-wise clip at 1 and AdamW with ``weight_decay`` 1e-4 on the weights,
    Adam on biases and codebooks), real batch 64, constant rate.
    """

    name = "infowgan_gp"
    optim_defaults: ClassVar[dict[str, Any]] = {**HSU_OPTIM, "weight_decay": 1e-4}

    def __init__(self, *, arch: str = "qlae", info_weight: float = 200.0, **base: Any) -> None:
        super().__init__(arch=arch, **base)
        check_nonneg(info_weight=info_weight)
        self.info_weight = float(info_weight)

    def prior(self, batch: int, device: torch.device, grad: bool = False) -> Tensor:
        """Codes ``z ~ U[0, 1]^L``, ``(batch, L)``."""
        return torch.rand(batch, self.num_latents, device=device)

    def read_code(self, head: Tensor, grad_to_codebook: bool) -> tuple[Tensor, Tensor]:
        """The code ``E`` reads from the encoder's code head, and its extra loss (none here)."""
        return head, head.new_zeros(())

    def generate(self, z: Tensor) -> Tensor:
        """Images ``sigmoid(G(z))`` in ``[0, 1]``."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self.check_input(x)
        z = self.prior(len(x), x.device)
        with torch.no_grad():
            fake = self.generate(z)
        v_real, v_fake, gp, e_fake = self.critic_terms(x, fake)
        code, code_loss = self.read_code(e_fake, grad_to_codebook=False)
        info = F.mse_loss(code, z)
        wdist = v_real.mean() - v_fake.mean()
        critic = -wdist + self.gp_weight * gp + self.info_weight * info + code_loss
        loss = critic
        terms = {"critic_loss": critic, "wdist": wdist, "gp": gp, "info_loss": info}
        if self.generator_step:  # fresh codes; the critic-encoder's parameters detached
            z_gen = self.prior(len(x), x.device, grad=True)
            out = frozen_call(self.encoder, self.generate(z_gen))
            code_gen, code_loss_gen = self.read_code(out[:, 1:], grad_to_codebook=True)
            info_gen = F.mse_loss(code_gen, z_gen)
            gen = -out[:, 0].mean() + self.info_weight * info_gen + code_loss_gen
            loss = loss + gen
            terms["gen_loss"] = gen
        else:  # logged every batch: the generator's loss on this batch's (detached) fakes
            terms["gen_loss"] = -v_fake.mean() + self.info_weight * info + code_loss
        return {"loss": loss, **{name: t.detach() for name, t in terms.items()}}

    def decode_latents(self, z: Tensor) -> Tensor:
        return self.generate(z)

    def traversal_values(self, steps: int) -> Tensor:
        device = next(self.parameters()).device
        return torch.linspace(0.0, 1.0, steps, device=device).expand(self.num_latents, -1)


class QLInfoWGANGP(InfoWGANGP):
    """InfoWGAN-GP with a quantized latent (module doc): ``num_values`` learnable values per
    latent at ``linspace(-0.5, 0.5)``, codes drawn uniformly from each latent's values, ``E``
    read through the nearest value (straight-through), plus ``quant_weight * Lq + commit_weight *
    Lc`` in both losses. Only the generator's loss moves the codebook (the critic's copy reads it
    detached). Representation: the quantized ``E(x)``. ``weight_decay`` 1e-4 by default; the
    Shapes3D and MPI3D presets use 1e-3."""

    name = "qlinfowgan_gp"
    discrete = True

    def __init__(
        self,
        *,
        arch: str = "qlae",
        num_values: int = 10,
        quant_weight: float = 0.01,
        commit_weight: float = 0.01,
        **options: Any,
    ) -> None:
        super().__init__(arch=arch, **options)
        check_nonneg(quant_weight=quant_weight, commit_weight=commit_weight)
        self.latent = ScalarQuantize(
            num_values,
            self.num_latents,
            codebook="per_dim",
            mode="nearest",
            init="linspace",
            quant_weight=quant_weight,
            commit_weight=commit_weight,
        )

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        yield from super().generator_parameters()
        yield from self.latent.parameters()

    def prior(self, batch: int, device: torch.device, grad: bool = False) -> Tensor:
        """Each latent's code drawn uniformly from its values, ``(batch, L)``; differentiable in
        the codebook when ``grad`` (the generator's draw)."""
        index = torch.randint(self.latent.num_values, (batch, self.num_latents), device=device)
        codes = self.latent.indices_to_codes(index)
        return codes if grad else codes.detach()

    def read_code(self, head: Tensor, grad_to_codebook: bool) -> tuple[Tensor, Tensor]:
        codebook = self.latent.codebook if grad_to_codebook else self.latent.codebook.detach()
        out = ops.quantize_nearest(
            head,
            codebook,
            1,
            quant_weight=self.latent.quant_weight,
            commit_weight=self.latent.commit_weight,
        )
        return out.quantized, out.loss

    @torch.no_grad()
    def encode_latents(self, x: Tensor) -> Tensor:
        with evaluating(self):
            return self.latent(self.encoder(x)[:, 1:]).quantized

    def traversal_values(self, steps: int) -> Tensor:
        return codebook_traversal(self.latent.codebook, self.num_latents, steps)

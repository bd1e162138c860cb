"""DiD-R: our reconstruction of DiD (Zhang et al. 2025, "Disentanglement in Difference"), not
the authors' method, which has no public code (baselines spec §3.1, *our design*).

A WGAN-GP generator ``G(c, n)`` with codes ``c ~ U[-1, 1]^d`` learns from three networks: the
critic ``V`` with the Samples Encoder ``E`` (two heads on one image encoder), and the Difference
Encoder ``H``, which embeds a pair of generated images that differ in one code entry ``k``; a
supervised contrastive loss over the pairs, labelled by ``k``, makes the code dimensions
distinguishable (InfoGAN-CR / DisCo style).

The WGAN-GP machinery (one loss per batch, each network reaching only its own parameters, the
generator every ``n_critic``-th batch) is :class:`fqvae.models.wgan.WGANGP`'s; the Difference
Encoder's loss joins the sum the same way.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fqvae.models.common import check_choice, check_nonneg, frozen_call
from fqvae.models.wgan import WGANGP
from fqvae.nn import ARCHS

DIFFERENCE_FEATURES = 256
EMBEDDING = 128
DIFFERENCE_LOSSES = ("contrastive", "classify")


def sample_pairs(batch: int, codes: int, device: torch.device | str = "cpu") -> tuple[Tensor, ...]:
    """Spec §3.1 pair generation: ``c ~ U[-1, 1]^codes``, ``k ~ U{0..codes-1}``, ``delta ~
    U[0.5, 1]``; ``c'`` is ``c`` with ``c_k + delta`` if that is <= 1, else ``c_k - delta``.
    Returns ``(c, c', k)``: ``(B, codes)``, ``(B, codes)``, int64 ``(B,)``."""
    c = torch.rand(batch, codes, device=device) * 2 - 1
    k = torch.randint(codes, (batch,), device=device)
    delta = torch.rand(batch, 1, device=device) * 0.5 + 0.5
    ck = c.gather(1, k[:, None])
    moved = torch.where(ck + delta <= 1, ck + delta, ck - delta)
    return c, c.scatter(1, k[:, None], moved), k


def supervised_contrastive(h: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """``mean_m -(1/|P_m|) sum_{p in P_m} log(exp(h_m.h_p/t) / sum_{a != m} exp(h_m.h_a/t))``,
    ``P_m = {p != m : labels_p = labels_m}``, over the anchors with a non-empty ``P_m`` (0 when
    there are none). ``h``: ``(M, F)`` L2-normalised embeddings."""
    self_pair = torch.eye(len(h), dtype=torch.bool, device=h.device)
    sim = (h @ h.T / temperature).masked_fill(self_pair, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~self_pair
    count = positive.sum(1)
    per_anchor = -log_prob.masked_fill(~positive, 0.0).sum(1) / count.clamp(min=1)
    anchors = count > 0
    return (per_anchor * anchors).sum() / anchors.sum().clamp(min=1)


class DiDR(WGANGP):
    """DiD-R (module doc). ``encoder``: the critic and Samples Encoder, head ``1 + d`` (``V``
    then ``E``); ``decoder``: the generator ``G`` on ``concat(c, n)``, ``x = sigmoid(logits)``;
    ``difference``: ``H``, its own encoder on the ``2C``-channel pair, then ReLU, Linear to 128
    and L2 normalisation. ``d = num_latents``.

    Per batch ``x`` (``M = len(x)`` pairs):

    - critic/encoder: ``mean V(G) - mean V(x) + gp_weight * GP + lambda_enc * L_enc``;
    - difference encoder: ``L_H`` (``difference_loss``: ``"contrastive"``, temperature
      ``temperature``, or ``"classify"``, a d-way cross-entropy head on ``h``);
    - generator, every ``n_critic``-th batch (``set_step``): ``-mean V(G) + lambda_h * L_H +
      lambda_enc * L_enc``, with ``L_enc = mean ||E(G(c, n)) - c||^2``.

    The generator's term sees the critic before this batch's critic update, i.e. after its
    updates on the previous ``n_critic`` batches, and this batch's draws of ``(c, n)``.
    Representation: ``E(x)``. Defaults (untuned): ``lambda_h`` 1, ``lambda_enc`` 200, Adam(b1 0,
    b2 0.9) at a constant rate; the published settings add lr 2e-4, batch 64, 200k batches.
    """

    name = "did_r"

    def __init__(
        self,
        *,
        num_latents: int,
        arch: str = "qlae",
        n_noise: int = 0,
        lambda_h: float = 1.0,
        lambda_enc: float = 200.0,
        gp_weight: float = 10.0,
        n_critic: int = 5,
        difference_loss: str = "contrastive",
        temperature: float = 0.1,
        **base: Any,
    ) -> None:
        if isinstance(n_noise, bool) or not isinstance(n_noise, int) or n_noise < 0:
            raise ValueError(f"n_noise must be an int >= 0, got {n_noise!r}")
        super().__init__(
            num_latents=num_latents,
            arch=arch,
            gp_weight=gp_weight,
            n_critic=n_critic,
            generator_features=num_latents + n_noise,
            **base,
        )
        check_nonneg(lambda_h=lambda_h, lambda_enc=lambda_enc)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.n_noise = n_noise
        self.lambda_h, self.lambda_enc = float(lambda_h), float(lambda_enc)
        self.temperature = float(temperature)
        self.difference_kind = check_choice("difference_loss", difference_loss, DIFFERENCE_LOSSES)
        encoder_cls = ARCHS[arch][0]
        self.difference = nn.Sequential(
            encoder_cls(2 * self.in_channels, self.image_size, DIFFERENCE_FEATURES),
            nn.ReLU(),
            nn.Linear(DIFFERENCE_FEATURES, EMBEDDING),
        )
        if self.difference_kind == "classify":
            self.difference_head = nn.Linear(EMBEDDING, num_latents)

    def generate(self, c: Tensor, n: Tensor) -> Tensor:
        """Images ``G(c, n)`` in ``[0, 1]``."""
        return torch.sigmoid(self.decoder(torch.cat([c, n], dim=1)))

    def difference_terms(self, x1: Tensor, x2: Tensor, k: Tensor, frozen: bool) -> Tensor:
        """``L_H`` of the pairs ``(x1, x2)`` labelled by their changed code ``k``; ``frozen``
        detaches H's parameters (the generator's copy of the loss)."""
        call = frozen_call if frozen else (lambda module, *a: module(*a))
        h = F.normalize(call(self.difference, torch.cat([x1, x2], dim=1)), dim=1)
        if self.difference_kind == "classify":
            return F.cross_entropy(call(self.difference_head, h), k)
        return supervised_contrastive(h, k, self.temperature)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self.check_input(x)
        c, c_pair, k = sample_pairs(len(x), self.num_latents, x.device)
        n = torch.randn(len(x), self.n_noise, device=x.device)
        with torch.set_grad_enabled(self.generator_step and torch.is_grad_enabled()):
            x1, x2 = self.generate(c, n), self.generate(c_pair, n)
        fake = x1.detach()
        # critic and Samples Encoder: generated images detached
        v_real, v_fake, gp, e_fake = self.critic_terms(x, fake)
        enc = (e_fake - c).pow(2).sum(1).mean()
        wdist = v_real.mean() - v_fake.mean()
        critic = -wdist + self.gp_weight * gp + self.lambda_enc * enc
        # Difference Encoder: pairs detached
        diff = self.difference_terms(fake, x2.detach(), k, frozen=False)
        loss = critic + diff
        if self.generator_step:  # the generator: the other networks' parameters detached
            out = frozen_call(self.encoder, x1)
            gen_diff = self.difference_terms(x1, x2, k, frozen=True)
            gen_enc = (out[:, 1:] - c).pow(2).sum(1).mean()
            loss = loss + (-out[:, 0].mean() + self.lambda_h * gen_diff + self.lambda_enc * gen_enc)
        # the generator's loss value, logged every batch (on generator steps: the term above)
        gen = -v_fake.mean() + self.lambda_h * diff + self.lambda_enc * enc
        terms = {
            "critic_loss": critic,
            "wdist": wdist,
            "gp": gp,
            "enc_loss": enc,
            "diff_loss": diff,
            "gen_loss": gen,
        }
        return {"loss": loss, **{name: t.detach() for name, t in terms.items()}}

    def decode_latents(self, z: Tensor) -> Tensor:
        """``G(z, 0)``: the noise at its mean."""
        return self.generate(z, z.new_zeros(len(z), self.n_noise))

    def traversal_values(self, steps: int) -> Tensor:
        device = next(self.parameters()).device
        return torch.linspace(-1.0, 1.0, steps, device=device).expand(self.num_latents, -1)

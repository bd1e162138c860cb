"""WGAN-GP machinery shared by the GAN-trained models (DiD-R, InfoWGAN-GP, QLInfoWGAN-GP).

The encoder is also the critic: its head's column 0 is the value ``V(x)``, the rest the code
``E(x)``; the decoder is the generator ``G``, images ``sigmoid(G(.))``. The base interface has
one loss per batch, so a model's ``forward`` returns the sum of the critic's and (every
``n_critic``-th batch, :meth:`WGANGP.set_step`) the generator's loss, each built to reach only
its own network (the other's parameters detached with :func:`frozen_call`, generated images
detached where they feed the critic). One backward then gives every network exactly the gradient
of its own loss, and one Adam over all parameters equals one Adam per network (Adam is
element-wise, and parameters without a gradient are skipped, step count and weight decay
included). Off generator batches the generator's parameters get no gradient and do not move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fqvae.models.common import AutoencoderModel, check_nonneg, evaluating


@torch.compiler.disable
def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, eps: Tensor | None = None
) -> Tensor:
    """``mean((||grad_x V(x~)||_2 - 1)^2)`` at ``x~ = eps * real + (1 - eps) * fake``, ``eps ~
    U[0, 1]`` per sample; differentiable (``create_graph``) in the critic's parameters. Runs
    eagerly under ``torch.compile``, whose graphs cannot be differentiated twice."""
    if eps is None:
        shape = (len(real),) + (1,) * (real.dim() - 1)
        eps = torch.rand(shape, dtype=real.dtype, device=real.device)
    with torch.enable_grad():
        mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


class WGANGP(AutoencoderModel):
    """Critic-encoder (head ``1 + num_latents``: ``V`` then ``E``) and generator (input
    ``generator_features``, default ``num_latents``), trained with one generator batch per
    ``n_critic`` critic batches and a gradient penalty of weight ``gp_weight``. Subclasses
    implement ``forward`` with :meth:`critic_terms`; the representation is ``E(x)``."""

    pixels = "unit"
    pixel_options = ("unit",)
    graph_breaks = "the gradient penalty (a second derivative) runs eagerly"
    optim_defaults: ClassVar[dict[str, Any]] = {"lr_schedule": "constant"}
    adam_betas: ClassVar[tuple[float, float]] = (0.0, 0.9)

    def __init__(
        self,
        *,
        num_latents: int,
        arch: str = "qlae",
        gp_weight: float = 10.0,
        n_critic: int = 5,
        generator_features: int | None = None,
        **base: Any,
    ) -> None:
        super().__init__(
            num_latents=num_latents,
            arch=arch,
            head_features=1 + num_latents,
            decoder_features=generator_features or num_latents,
            **base,
        )
        check_nonneg(gp_weight=gp_weight)
        if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
            raise ValueError(f"n_critic must be a positive int, got {n_critic!r}")
        self.gp_weight, self.n_critic = float(gp_weight), n_critic
        self.generator_step = True

    def set_step(self, it: int) -> None:
        """Batch ``it`` (0-based) trains the generator when ``it % n_critic == 0``."""
        self.generator_step = it % self.n_critic == 0

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        """What the generator's optimizer moves: the decoder (subclasses add codebooks)."""
        yield from self.decoder.parameters()

    def value(self, x: Tensor) -> Tensor:
        """The critic's value ``V(x)``, ``(B,)``."""
        return self.encoder(x)[:, 0]

    def critic_terms(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(v_real, v_fake, gp, e_fake)``: the values ``(B,)`` of the real and the (detached)
        fake images, the gradient penalty, and the code head ``E`` on the fakes."""
        fake = fake.detach()
        v_real = self.value(real)
        out_fake = self.encoder(fake)
        gp = gradient_penalty(self.value, real, fake)
        return v_real, out_fake[:, 0], gp, out_fake[:, 1:]

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        """Off generator steps the generator has no gradient, so no optimizer moves it (also
        when gradients were zeroed rather than set to None); then the split clip, if any."""
        if not self.generator_step:
            for p in self.generator_parameters():
                p.grad = None
        super().before_optimizer_step()

    @torch.no_grad()
    def encode_latents(self, x: Tensor) -> Tensor:
        with evaluating(self):
            return self.encoder(x)[:, 1:]

    def representation(self, x: Tensor) -> Tensor:
        return self.encode_latents(x)

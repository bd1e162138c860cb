"""The interface every model implements; the trainer and the metrics rely on nothing else.

A model owns its losses and optimizers; the trainer owns the loop, devices, precision,
distribution, logging and checkpoints. Shapes: ``x`` is float32 ``(B, C, H, W)`` pixels in the
model's ``pixels`` convention; ``L`` is the number of latents.

Training step, as the trainer runs it for each batch ``x`` (after ``model.set_step(it)``):

1. Single-optimizer models: ``terms = model(x)``; ``terms["loss"].backward()``;
   ``model.before_optimizer_step()``; step every optimizer in ``optimizers``.
2. Models with ``has_discriminator`` (FactorVAE, FactorDVAE, FactorQVAE) split the batch:
   ``x1, x2 = x.chunk(2)``; ``terms = model(x1)`` (the discriminator's parameters are frozen
   inside ``forward``), backward, step the main optimizers; then
   ``d_terms = model.discriminator_loss(terms["codes"], x2)``, backward ``d_terms["loss"]`` and
   step the discriminator optimizer. For these models, and only these,
   ``configure_optimizers`` returns ``Optimizers.discriminator``.
3. Every scheduler returned by ``configure_optimizers`` steps once per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn


@dataclass
class Optimizers:
    """What :meth:`DisentanglementModel.configure_optimizers` returns."""

    main: list[torch.optim.Optimizer]
    discriminator: torch.optim.Optimizer | None = None
    schedulers: list[torch.optim.lr_scheduler.LRScheduler] = field(default_factory=list)


class DisentanglementModel(nn.Module):
    """Base class. Subclasses set the class attributes and implement the methods below.

    A model with ``has_discriminator = True`` registers its discriminator network as the
    submodule ``discriminator`` in ``__init__`` and implements :meth:`discriminator_loss`; other
    models have no ``discriminator`` attribute. (There is deliberately no class-level
    ``discriminator = None``: a class attribute would shadow the submodule, which ``nn.Module``
    keeps in ``_modules`` and finds only when normal attribute lookup fails.)
    """

    name: ClassVar[str] = ""
    #: "centered" (uint8/255 - 0.5, FactorQVAE family) or "unit" (uint8/255, QLAE family): the
    #: class's default; a model built with the ``pixels`` hparam holds its own
    pixels: str = "centered"
    #: whether :meth:`representation` returns discrete codes (drives InfoMEC's branch)
    discrete: ClassVar[bool] = False
    #: whether the model trains a discriminator with the split-batch step (see the module doc)
    has_discriminator: ClassVar[bool] = False
    #: why :meth:`forward` cannot compile as one graph (``torch.compile`` splits it there);
    #: empty when it compiles whole
    graph_breaks: ClassVar[str] = ""

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Training losses for the main update. Keys: ``"loss"`` (0-d, to backprop), named
        0-d terms (e.g. ``"recon"``, ``"kl"``, ``"tc_raw"``, ``"tc_weighted"``), and for
        discriminator models ``"codes"``: the detached ``(B, L, K)`` soft one-hots or ``(B, L)``
        samples that the discriminator reads."""
        raise NotImplementedError

    def discriminator_loss(self, codes: Tensor, x_other: Tensor) -> dict[str, Tensor]:
        """Discriminator update on detached ``codes`` (from ``forward``) and permuted codes of
        ``x_other``. Keys: ``"loss"`` and ``"disc_acc"``. Only for ``has_discriminator``."""
        raise NotImplementedError

    def configure_optimizers(self, lr: float, iterations: int, fused: bool = False) -> Optimizers:
        """Optimizers and per-batch schedulers with this model's published settings; ``fused``
        asks for torch's fused Adam/AdamW kernels (the same update, rounded differently)."""
        raise NotImplementedError

    def before_optimizer_step(self) -> None:
        """Hook between backward and the main optimizer step (e.g. QLAE's element-wise clip)."""

    def set_step(self, it: int) -> None:
        """Update step-dependent state (the Gumbel temperature) at the start of batch ``it``."""

    def representation(self, x: Tensor) -> Tensor:
        """Codes for the metrics, ``(B, L)``, computed in eval mode (see the specs, §10)."""
        raise NotImplementedError

    def reconstruct(self, x: Tensor) -> Tensor:
        """Eval-mode reconstruction in pixel space (same convention as ``x``)."""
        raise NotImplementedError

    def traversal_values(self, steps: int) -> Tensor:
        """``(L, steps)`` latent values to sweep for traversals: the codebook values (quantized
        models) or -3..3 standard deviations (continuous models)."""
        raise NotImplementedError

    def decode_latents(self, z: Tensor) -> Tensor:
        """Decode ``(B, L)`` latent values (as produced by the quantizer/sampler) to pixels."""
        raise NotImplementedError

    def encode_latents(self, x: Tensor) -> Tensor:
        """Eval-mode latent values ``(B, L)`` that :meth:`decode_latents` accepts."""
        raise NotImplementedError

"""Shared model plumbing: the autoencoder base class, optimizer recipes and LR schedules."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from fqvae.models.base import DisentanglementModel, Optimizers
from fqvae.nn import build_backbone

OPTIMIZERS = ("adam", "split")
LR_SCHEDULES = ("cosine", "constant")
LR_CYCLES = ("periodic", "single")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming both."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_nonneg(**values: float) -> None:
    """Raise a ValueError for any weight that is not a finite number >= 0."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Run the block with ``module`` in eval mode, then restore its previous mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def frozen_call(module: nn.Module, *inputs: Tensor) -> Tensor:
    """``module(*inputs)`` with its parameters detached: the gradient reaches the inputs only,
    and nothing is toggled (every ``requires_grad`` stays as it is)."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, inputs)


#: Hsu et al.'s optimizer: AdamW on the weights with element-wise gradient clipping, Adam on
#: biases and codebooks, constant learning rate (QLAE spec §2); models add their weight decay
HSU_OPTIM: dict[str, Any] = {"optimizer": "split", "clip_value": 1.0, "lr_schedule": "constant"}


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer options that every model accepts as keyword hparams.

    - ``optimizer``: ``"adam"``: one Adam over encoder, decoder and codebook (FactorQVAE code);
      ``"split"``: QLAE's recipe (qlae.md §2): weights, GroupNorm scales and constant inputs get
      element-wise gradient clipping to ``+-clip_value`` and AdamW(``weight_decay``); biases and
      ``latent.*`` (the codebooks) get plain Adam.
    - ``lr_schedule``: ``"cosine"`` or ``"constant"``. Cosine: ``eta_min + (lr - eta_min)(1 +
      cos(pi t / lr_t_max)) / 2`` per completed batch ``t``; ``lr_t_max=None`` means the run's
      ``iterations``. ``lr_cycle="periodic"`` keeps following the cosine past ``lr_t_max``
      (``CosineAnnealingLR``, the reference); ``"single"`` stays at ``eta_min`` after it.
    - ``disc_lr``: the discriminator's Adam lr (``None``: the main lr); discriminator models only.
    - ``codebook_lr``: the Adam lr of the ``latent.*`` parameters (the codebooks; ``None``: the
      main lr). The cosine schedule scales it by the same factor as the main lr.
    """

    optimizer: str = "adam"
    weight_decay: float = 0.0
    clip_value: float | None = None
    lr_schedule: str = "cosine"
    lr_t_max: int | None = None
    lr_eta_min: float = 1.25e-6
    lr_cycle: str = "periodic"
    disc_lr: float | None = None
    codebook_lr: float | None = None

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("lr_cycle", self.lr_cycle, LR_CYCLES)
        check_nonneg(weight_decay=self.weight_decay, lr_eta_min=self.lr_eta_min)
        if self.clip_value is not None:
            check_nonneg(clip_value=self.clip_value)
        if self.optimizer == "adam" and (self.weight_decay or self.clip_value is not None):
            raise ValueError('weight_decay and clip_value need optimizer="split"')
        if self.lr_t_max is not None and (not isinstance(self.lr_t_max, int) or self.lr_t_max < 1):
            raise ValueError(f"lr_t_max must be a positive int or None, got {self.lr_t_max!r}")
        for name in ("disc_lr", "codebook_lr"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in fields(cls)}


def cosine_lr(step: int, lr: float, t_max: int, eta_min: float, cycle: str) -> float:
    """The cosine-annealed learning rate after ``step`` completed batches."""
    t = min(step, t_max) if cycle == "single" else step
    return eta_min + (lr - eta_min) * (1.0 + math.cos(math.pi * t / t_max)) / 2.0


def decay_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the regularized and unregularized parameters (QLAE §2), discriminator excluded.

    Unregularized: every ``*bias`` and every ``latent.*`` parameter; regularized: the rest.
    """
    reg, unreg = [], []
    for name, _ in model.named_parameters():
        if name.startswith("discriminator."):
            continue
        (unreg if name.endswith("bias") or name.startswith("latent.") else reg).append(name)
    return reg, unreg


def latents_in_use(indices: Tensor) -> Tensor:
    """0-d float32: how many latents of ``indices`` ``(B, L)`` (noise-free codes) are not the same
    on every image of the batch (the training-time view of InfoMEC's ``num_active``)."""
    return (indices != indices[:1]).any(0).sum().float()


def codebook_traversal(codebook: Tensor, num_latents: int, steps: int) -> Tensor:
    """``(L, steps)`` codebook values per latent, sorted, evenly subsampled by rank."""
    values = codebook.detach().reshape(-1, codebook.shape[-1]).expand(num_latents, -1)
    ranks = torch.linspace(0, codebook.shape[-1] - 1, steps).round().long()
    return values.sort(dim=-1).values[:, ranks.to(values.device)]


class GaussianCodes:
    """``encode_latents`` and ``representation`` for models whose ``posterior(x)`` returns
    ``(mu, spread, z)`` and whose ``repr_kind`` is ``"mean"`` or ``"sample"``."""

    @torch.no_grad()
    def encode_latents(self, x: Tensor) -> Tensor:
        with evaluating(self):
            return self.posterior(x)[0]

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        with evaluating(self):
            mu, _, z = self.posterior(x)
        return z if self.repr_kind == "sample" else mu


class AutoencoderModel(DisentanglementModel):
    """Encoder -> latent -> decoder plumbing shared by every model in this package.

    Subclasses build their latent module (always named ``latent`` when it has parameters),
    and implement ``forward``, ``encode_latents`` and ``representation``. The reconstruction
    loss follows ``pixels`` (the class default, or the ``pixels`` hparam): ``"centered"`` = MSE
    on the raw decoder output (FactorQVAE family), ``"unit"`` = BCE with logits, and ``sigmoid``
    for pixels (QLAE family).

    Every model's ``__init__`` names its default ``arch`` and its own options and passes the rest
    (the image shape, ``num_latents``, the :class:`OptimConfig` options) on with ``**``; here
    they end. ``head_features`` is the encoder's output size and ``decoder_features`` the
    decoder's input size (both ``num_latents`` unless given).
    """

    #: the pixel conventions this model trains with (``pixels`` picks one, and with it the
    #: reconstruction loss); a model whose loss needs one convention lists only that one
    pixel_options: ClassVar[tuple[str, ...]] = ("centered", "unit")
    #: this class's defaults for :class:`OptimConfig`
    optim_defaults: ClassVar[dict[str, Any]] = {}
    #: ``(beta1, beta2)`` of the main Adam/AdamW optimizers
    adam_betas: ClassVar[tuple[float, float]] = (0.9, 0.999)

    def __init__(
        self,
        *,
        in_channels: int = 3,
        image_size: int = 64,
        num_latents: int,
        arch: str,
        head_features: int | None = None,
        decoder_features: int | None = None,
        pixels: str | None = None,
        **optim: Any,
    ) -> None:
        super().__init__()
        if pixels is not None:
            self.pixels = check_choice("pixels", pixels, self.pixel_options)
        if isinstance(num_latents, bool) or not isinstance(num_latents, int) or num_latents < 1:
            raise ValueError(f"num_latents must be a positive int, got {num_latents!r}")
        unknown = sorted(set(optim) - set(OptimConfig.names()))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown hparams {unknown}")
        self.optim = OptimConfig(**{**self.optim_defaults, **optim})
        if self.optim.disc_lr is not None and not self.has_discriminator:
            raise ValueError(f"disc_lr needs a model with a discriminator, not {self.name}")
        cosine_only = sorted({"lr_t_max", "lr_eta_min", "lr_cycle"} & set(optim))
        if cosine_only and self.optim.lr_schedule != "cosine":
            raise ValueError(f"{cosine_only} need lr_schedule='cosine', got 'constant'")
        self.in_channels, self.image_size, self.num_latents = in_channels, image_size, num_latents
        self.arch = arch
        self.encoder, self.decoder = build_backbone(
            arch,
            in_channels,
            image_size,
            head_features or num_latents,
            decoder_features or num_latents,
        )

    def check_input(self, x: Tensor) -> None:
        """Raise unless ``x`` is a float ``(B, C, S, S)`` batch of this model's size."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != expected:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{self.name} expects images of shape (B, *{expected}), got {got}")
        if not x.is_floating_point():
            raise TypeError(f"{self.name} expects float pixels, got {x.dtype}")

    def recon_loss(self, out: Tensor, x: Tensor) -> Tensor:
        """Mean over batch, channels and pixels: MSE (centered) or BCE with logits (unit)."""
        if self.pixels == "unit":
            return F.binary_cross_entropy_with_logits(out, x)
        return F.mse_loss(out, x)

    def to_pixels(self, out: Tensor) -> Tensor:
        """Decoder output -> pixels in this model's convention."""
        return torch.sigmoid(out) if self.pixels == "unit" else out

    def decode_latents(self, z: Tensor) -> Tensor:
        return self.to_pixels(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        with evaluating(self):
            return self.decode_latents(self.encode_latents(x))

    def traversal_values(self, steps: int) -> Tensor:
        device = next(self.parameters()).device
        return torch.linspace(-3.0, 3.0, steps, device=device).expand(self.num_latents, -1)

    def configure_optimizers(self, lr: float, iterations: int, fused: bool = False) -> Optimizers:
        if not lr > 0 or not iterations >= 1:
            raise ValueError(f"need lr > 0 and iterations >= 1, got {lr}, {iterations}")
        params = dict(self.named_parameters())
        cfg, betas = self.optim, self.adam_betas
        kernel = {"fused": True} if fused else {}
        if cfg.optimizer == "split":
            reg, unreg = decay_groups(self)
            main = [
                torch.optim.AdamW(
                    [params[n] for n in reg],
                    lr=lr,
                    betas=betas,
                    weight_decay=cfg.weight_decay,
                    **kernel,
                ),
                torch.optim.Adam(self._lr_groups(unreg, lr), betas=betas, **kernel),
            ]
        else:
            own = [n for n in params if not n.startswith("discriminator.")]
            main = [torch.optim.Adam(self._lr_groups(own, lr), betas=betas, **kernel)]
        disc = None
        if self.has_discriminator:
            disc = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.disc_lr or lr, **kernel)
        schedulers = []
        if cfg.lr_schedule == "cosine":
            t_max = cfg.lr_t_max or iterations
            for opt in main + ([disc] if disc is not None else []):
                base = opt.param_groups[0]["lr"]
                schedulers.append(
                    torch.optim.lr_scheduler.LambdaLR(
                        opt,
                        lambda t, b=base: cosine_lr(t, b, t_max, cfg.lr_eta_min, cfg.lr_cycle) / b,
                    )
                )
        return Optimizers(main=main, discriminator=disc, schedulers=schedulers)

    def _lr_groups(self, names: list[str], lr: float) -> list[dict[str, Any]]:
        """Adam parameter groups for ``names``: the codebooks (``latent.*``) at ``codebook_lr``
        when it is set, the rest at ``lr``."""
        params = dict(self.named_parameters())
        codebook = [n for n in names if n.startswith("latent.")]
        if self.optim.codebook_lr is None or not codebook:
            return [{"params": [params[n] for n in names], "lr": lr}]
        rest = [params[n] for n in names if n not in codebook]
        return [
            {"params": rest, "lr": lr},
            {"params": [params[n] for n in codebook], "lr": self.optim.codebook_lr},
        ]

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        """``split`` optimizer: clip every regularized gradient element to ``+-clip_value``."""
        if self.optim.optimizer != "split" or self.optim.clip_value is None:
            return
        params = dict(self.named_parameters())
        for name in decay_groups(self)[0]:
            grad = params[name].grad
            if grad is not None:
                grad.clamp_(-self.optim.clip_value, self.optim.clip_value)

"""The model zoo: :data:`METHODS` (name -> class), the published configurations that only change a
method's defaults (:data:`CONFIGURATIONS`), and :func:`build_model`, which builds either."""

from __future__ import annotations

import inspect
from typing import Any

from fqvae.models.ae import AE
from fqvae.models.base import DisentanglementModel, Optimizers
from fqvae.models.betatcvae import BetaTCVAE
from fqvae.models.bioae import BioAE
from fqvae.models.common import AutoencoderModel, OptimConfig
from fqvae.models.configurations import CONFIGURATIONS
from fqvae.models.devae import DeVAE
from fqvae.models.didr import DiDR
from fqvae.models.dvae import DVAE
from fqvae.models.factordvae import FactorDVAE
from fqvae.models.factorqvae import FactorQVAE
from fqvae.models.factorvae import FactorVAE
from fqvae.models.hsu import VAEHsu
from fqvae.models.infowgan import InfoWGANGP, QLInfoWGANGP
from fqvae.models.qlae import QLAE
from fqvae.models.qvae import QVAE
from fqvae.models.vae import VAE
from fqvae.models.vqvae import VQVAE

METHODS: dict[str, type[DisentanglementModel]] = {
    cls.name: cls
    for cls in (
        FactorQVAE,
        QVAE,
        DVAE,
        FactorDVAE,
        FactorVAE,
        VAE,
        AE,
        BioAE,
        QLAE,
        VQVAE,
        VAEHsu,
        BetaTCVAE,
        DeVAE,
        DiDR,
        InfoWGANGP,
        QLInfoWGANGP,
    )
}
#: every name :func:`build_model` accepts -> the class it builds (a configuration: its method's)
MODELS: dict[str, type[DisentanglementModel]] = {
    **METHODS,
    **{name: METHODS[method] for name, (method, _) in CONFIGURATIONS.items()},
}
_SHAPE_ARGS = ("in_channels", "image_size", "num_latents")

__all__ = [
    "CONFIGURATIONS",
    "METHODS",
    "MODELS",
    "DisentanglementModel",
    "Optimizers",
    "build_model",
    "hparam_defaults",
    "hparam_names",
    *(cls.__name__ for cls in METHODS.values()),
]


def hparam_defaults(name: str) -> dict[str, Any]:
    """The keyword hparams model ``name`` accepts (besides the image shape and ``num_latents``)
    with their defaults: its own options, then the optimizer options (a configuration: its
    method's, with the configuration's defaults)."""
    cls = _model_class(name)
    if name in CONFIGURATIONS:
        method, defaults = CONFIGURATIONS[name]
        return {**hparam_defaults(method), **defaults}
    own: dict[str, Any] = {}
    # each model's __init__ names its own options and passes the rest on with ``**`` to its
    # bases, down to AutoencoderModel; the most derived default wins
    for klass in cls.__mro__:
        if klass in (AutoencoderModel, DisentanglementModel):
            break
        if "__init__" in vars(klass):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.kind == p.KEYWORD_ONLY and p.name not in _SHAPE_ARGS:
                    own.setdefault(p.name, p.default)
    if len(getattr(cls, "pixel_options", ())) > 1:
        own["pixels"] = cls.pixels
    optim = {**OptimConfig.defaults(), **getattr(cls, "optim_defaults", {})}
    if not cls.has_discriminator:
        del optim["disc_lr"]
    return {**own, **optim}


def hparam_names(name: str) -> tuple[str, ...]:
    """The keyword hparams model ``name`` accepts (besides the image shape and ``num_latents``)."""
    return tuple(hparam_defaults(name))


def _model_class(name: str) -> type[DisentanglementModel]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name]


def build_model(
    name: str,
    *,
    in_channels: int,
    image_size: int,
    num_latents: int,
    arch: str | None = None,
    **hparams: Any,
) -> DisentanglementModel:
    """Build model ``name`` for ``(in_channels, image_size, image_size)`` images.

    ``arch``: ``"dalle"``, ``"qlae"``, ``"dlib"``, ``"small"`` or ``"small3"`` (``None``: the
    model's default).
    ``hparams``: the keyword options of the model class (see :func:`hparam_names`); options of
    other models, and unknown names, raise a ``TypeError`` that names them.
    """
    cls = _model_class(name)
    accepted = set(hparam_names(name))
    unknown = sorted(set(hparams) - accepted)
    if unknown:
        raise TypeError(_unknown_message(name, unknown, accepted))
    if arch is not None:
        hparams["arch"] = arch
    if name in CONFIGURATIONS:
        hparams = {**CONFIGURATIONS[name][1], **hparams}
    model = cls(in_channels=in_channels, image_size=image_size, num_latents=num_latents, **hparams)
    model.name = name
    return model


def _unknown_message(name: str, unknown: list[str], accepted: set[str]) -> str:
    parts = []
    for key in unknown:
        owners = [m for m in sorted(MODELS) if key in hparam_names(m)]
        where = f" (an option of {', '.join(owners)})" if owners else ""
        parts.append(f"{key!r}{where}")
    return (
        f"model {name!r} does not accept {', '.join(parts)}; "
        f"its options are: {', '.join(sorted(accepted))}"
    )

"""A run's model from its config: the ``build_model`` keyword arguments and the build, with a
model's refusal of its settings turned into a one-line :class:`ConfigError`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fqvae.training.config import Config, ConfigError

if TYPE_CHECKING:
    from fqvae.models.base import DisentanglementModel


def build_kwargs(cfg: Config, observation_shape: tuple[int, ...]) -> dict[str, Any]:
    """Keyword arguments of ``fqvae.models.build_model`` for ``cfg`` on images of
    ``observation_shape`` (height, width, channels)."""
    height, _, channels = observation_shape
    return dict(
        name=cfg.model.name,
        in_channels=channels,
        image_size=height,
        num_latents=cfg.model.latents,
        arch=cfg.model.arch,
        **cfg.model.hparams,
    )


def build(
    cfg: Config, observation_shape: tuple[int, ...]
) -> tuple[DisentanglementModel, dict[str, Any]]:
    """The model of ``cfg`` for images of ``observation_shape`` (height, width, channels), on the
    CPU, and its ``build_model`` keyword arguments (stored in checkpoints, so
    :func:`fqvae.training.evaluation.load_for_eval` can rebuild it). Raises ConfigError naming the
    model when it rejects its hparams, backbone or image size."""
    from fqvae.models import build_model

    kwargs = build_kwargs(cfg, observation_shape)
    try:
        model = build_model(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {cfg.model.name!r} rejected its settings: {exc}") from exc
    return model, kwargs

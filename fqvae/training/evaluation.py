"""Evaluation of a model: the metrics of ``cfg.eval`` on sampled codes, reconstruction scores,
and rebuilding a trained model from its checkpoint for ``fqvae eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fqvae.data import GroundTruthDataset
from fqvae.models.base import DisentanglementModel
from fqvae.models.common import evaluating
from fqvae.training import checkpoint
from fqvae.training.config import Config

FIGURE_IMAGES = 512  # images for the codebook-usage histogram and the reconstruction scores


class Representation(nn.Module):
    """``model.representation`` as the callable the metrics sample from (with its pixels)."""

    def __init__(self, model: DisentanglementModel) -> None:
        super().__init__()
        self.model = model
        self.pixels = model.pixels
        self.image_size = getattr(model, "image_size", None)  # None: the images as they are

    def forward(self, x: Tensor) -> Tensor:
        return self.model.representation(x)


def load_for_eval(
    checkpoint_path: str | Path, device: str | torch.device, repr: str | None = None
) -> tuple[Representation, bool, str]:
    """Rebuild a trained model from a checkpoint for ``fqvae eval``: returns the representation
    function (eval mode, on ``device``), whether its codes are discrete, and the dataset name.

    ``repr`` replaces the model's ``repr`` option, the code the metrics read (for example
    ``"value"`` instead of the codebook ``"index"``); ``None`` keeps the trained one.
    """
    from fqvae.models import build_model, hparam_defaults

    state = checkpoint.load(checkpoint_path)
    kwargs = dict(state["model_kwargs"])
    if repr is not None:
        name = kwargs["name"]
        if "repr" not in hparam_defaults(name):
            raise ValueError(f"--repr: model {name!r} has one representation; drop --repr")
        kwargs["repr"] = repr
    try:
        model = build_model(**kwargs)
    except ValueError as exc:
        raise ValueError(f"--repr: {exc}" if repr is not None else str(exc)) from None
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return Representation(model), bool(model.discrete), state["config"]["data"]["name"]


# one step


def evaluate(
    model: DisentanglementModel,
    dataset: GroundTruthDataset,
    images: Tensor,
    cfg: Config,
    num_train: int,
    num_test: int,
    device: torch.device,
) -> dict[str, Any]:
    """Metrics of ``cfg.eval`` on ``num_train``/``num_test`` sampled points, plus the
    reconstruction MSE on ``images`` (held-out, model pixel space). Does not touch the
    training RNG streams."""
    from fqvae.metrics import evaluate as evaluate_metrics

    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), evaluating(model):
        recon = torch.cat(
            [model.reconstruct(images[i : i + 256]).float() for i in range(0, len(images), 256)]
        )
        result = evaluate_metrics(
            Representation(model),
            dataset,
            metrics=cfg.eval.metrics,
            num_train=num_train,
            num_test=num_test,
            discrete=model.discrete,
            device=device,
            preset=cfg.eval.metric_preset,
            n_jobs=cfg.eval.n_jobs,
            progress=False,
        )
    result.update(reconstruction_scores(recon, images))
    return result


def reconstruction_scores(recon: Tensor, images: Tensor) -> dict[str, float]:
    """``recon.mse`` (mean squared error per pixel) and ``recon.psnr`` (the mean over images of
    ``10 log10(1 / mse_image)`` dB; both pixel conventions span 1) of reconstructions ``recon``
    of ``images``, ``(N, C, H, W)`` in the model's pixel space."""
    per_image = (recon.float() - images.float()).pow(2).flatten(1).mean(1)
    psnr = -10.0 * torch.log10(per_image.clamp_min(1e-10))
    return {"recon.mse": float(per_image.mean()), "recon.psnr": float(psnr.mean())}


@torch.no_grad()
def sample_images(
    model: DisentanglementModel,
    dataset: GroundTruthDataset,
    count: int,
    seed: int,
    device: torch.device,
) -> Tensor:
    """``count`` images of ``dataset`` drawn without replacement with ``seed``, in index
    order, ``(count, C, H, W)`` in the model's pixel convention."""
    rng = np.random.RandomState(seed)
    idx = np.sort(rng.choice(len(dataset), min(count, len(dataset)), replace=False))
    return dataset.batch(idx, device, pixels=model.pixels)


def reconstruct_sample(
    model: DisentanglementModel,
    dataset: GroundTruthDataset,
    count: int,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    """:func:`reconstruction_scores` of ``count`` images of ``dataset`` drawn with ``seed``
    (``fqvae eval``; the trainer scores its held-out images)."""
    images = sample_images(model, dataset, count, seed, device)
    with evaluating(model):
        recon = torch.cat(
            [model.reconstruct(images[i : i + 256]).float() for i in range(0, len(images), 256)]
        )
    return reconstruction_scores(recon, images)


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of a metric result (for CSV rows and progress messages)."""
    return {
        k: float(v)
        for k, v in result.items()
        if isinstance(v, (int, float, np.number))
        and not isinstance(v, bool)
        and "." in k
        and not k.endswith("time_s")
    }

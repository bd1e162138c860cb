"""Draw (code, factor) pairs from a ground-truth dataset the way dlib does (spec metrics.md §1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from fqvae.metrics._inputs import to_numpy

PIXELS = ("unit", "centered")

RepresentationFn = Callable[[torch.Tensor], Any]


class GroundTruth(Protocol):
    """What the metrics read of a dataset (``fqvae.data.GroundTruthDataset`` has it): the factor
    sizes, which factors are latent, class sampling, flat indices and image batches."""

    @property
    def factor_sizes(self) -> list[int]: ...

    @property
    def latent_factor_indices(self) -> list[int]: ...

    def sample_factors(self, n: int, rng: np.random.RandomState) -> np.ndarray: ...

    def factors_to_index(self, factors: np.ndarray) -> np.ndarray: ...

    def batch(
        self, indices: np.ndarray | Sequence[int], device: str | torch.device, pixels: str
    ) -> torch.Tensor: ...


def resolve_device(representation_fn: RepresentationFn, device: Any = None) -> torch.device:
    """``device`` if given, else the device of ``representation_fn``'s parameters, else CPU."""
    if device is not None:
        return torch.device(device)
    if isinstance(representation_fn, torch.nn.Module):
        for tensor in representation_fn.parameters():
            return tensor.device
    return torch.device("cpu")


def check_dataset(dataset: GroundTruth) -> None:
    """Raise unless ``dataset`` has the ground-truth interface the metrics sample from."""
    for attr in ("factor_sizes", "latent_factor_indices", "sample_factors", "factors_to_index"):
        if not hasattr(dataset, attr):
            raise ValueError(f"dataset has no attribute {attr!r}; expected a GroundTruthDataset")
    if not callable(getattr(dataset, "batch", None)):
        raise ValueError("dataset has no batch(indices, device, pixels) method")


def complete_factors(
    dataset: GroundTruth, factors: np.ndarray, rng: np.random.RandomState
) -> np.ndarray:
    """Full classes (n, num_factors) int64 from latent classes (n, num_latent_factors).

    Each non-latent factor consumes ``rng.randint(size, size=n)`` in order, as in dlib (a
    single-class factor such as dSprites colour consumes no random state).
    """
    latent = list(dataset.latent_factor_indices)
    if factors.ndim != 2 or factors.shape[1] != len(latent):
        raise ValueError(
            f"dataset.sample_factors returned shape {factors.shape}, expected (n, {len(latent)})"
        )
    full = np.zeros((len(factors), len(dataset.factor_sizes)), dtype=np.int64)
    full[:, latent] = factors
    for f, size in enumerate(dataset.factor_sizes):
        if f not in latent:
            full[:, f] = rng.randint(size, size=len(factors))
    return full


def images(
    dataset: GroundTruth, classes: np.ndarray, device: torch.device, pixels: str
) -> torch.Tensor:
    """Images of full factor classes (n, num_factors): float32 (n, C, H, W) on ``device``."""
    return dataset.batch(dataset.factors_to_index(classes), device, pixels=pixels)


def encode(representation_fn: RepresentationFn, images: torch.Tensor) -> np.ndarray:
    """Codes (n, num_latents) of an image batch, as numpy, with gradients off."""
    with torch.no_grad():
        out = representation_fn(images)
    codes = to_numpy(out, "representation_fn output")
    if codes.ndim != 2 or codes.shape[0] != len(images):
        raise ValueError(
            f"representation_fn must return shape (batch, num_latents) = ({len(images)}, D), "
            f"got {codes.shape}"
        )
    return codes


def sample_factor_code(
    dataset: GroundTruth,
    representation_fn: RepresentationFn,
    n: int,
    rng: np.random.RandomState,
    batch_size: int = 16,
    device: Any = "cpu",
    pixels: str = "unit",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` points in batches of ``batch_size``: latent factors uniformly from ``rng``
    (``dataset.sample_factors``), then the non-latent ones, then images through
    ``dataset.batch`` and codes from ``representation_fn``.

    Returns codes (n, num_latents), dtype as ``representation_fn`` returns them, and latent
    factor classes, int64 (n, num_latent_factors).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if pixels not in PIXELS:
        raise ValueError(f"pixels must be one of {PIXELS}, got {pixels!r}")
    check_dataset(dataset)
    device = torch.device(device)
    codes, factors = [], []
    with tqdm(total=n, desc="sampling codes", unit="pt", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            f = np.asarray(dataset.sample_factors(m, rng), dtype=np.int64)
            x = images(dataset, complete_factors(dataset, f, rng), device, pixels)
            codes.append(encode(representation_fn, x))
            factors.append(f)
            bar.update(m)
    return np.concatenate(codes), np.concatenate(factors)

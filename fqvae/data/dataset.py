"""The in-memory ``GroundTruthDataset`` every loader and generator returns."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np
import torch
from einops import rearrange

from fqvae.data.factors import FactorTable

PIXEL_MODES = ("centered", "unit")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def split_lengths(n: int, fractions: Sequence[float] = SPLIT_FRACTIONS) -> list[int]:
    """Slice lengths exactly as ``torch.utils.data.random_split`` derives them from fractions."""
    lengths = [int(np.floor(n * f)) for f in fractions]
    for i in range(n - sum(lengths)):
        lengths[i % len(lengths)] += 1
    return lengths


def split_indices(
    n: int, seed: int = 1, fractions: Sequence[float] = SPLIT_FRACTIONS
) -> tuple[np.ndarray, ...]:
    """Train/val/test index arrays (int64), as ``random_split`` with ``manual_seed(seed)``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    bounds = np.cumsum([0, *split_lengths(n, fractions)])
    return tuple(perm[a:b].astype(np.int64) for a, b in zip(bounds[:-1], bounds[1:]))


class GroundTruthDataset:
    """Factor-labelled images held in memory (or memory-mapped).

    ``images`` is (N, H, W, C) uint8 in storage order: image i has the factor classes
    ``index_to_factors(i)`` (mixed radix, last factor fastest). Pixel values lie in
    [0, ``max_value``] (1 for dSprites, 255 otherwise).
    """

    def __init__(
        self,
        name: str,
        images: np.ndarray,
        table: FactorTable,
        max_value: int = 255,
        data_source: str = "real",
    ) -> None:
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be (N, H, W, C) uint8, got {images.shape} {images.dtype}"
            )
        if len(images) != table.num_images:
            raise ValueError(
                f"{name}: {len(images)} images but the factor sizes {table.sizes} give "
                f"{table.num_images}"
            )
        self.name = name
        self.images = images
        self.table = table
        self.max_value = int(max_value)
        self.data_source = data_source

    def __repr__(self) -> str:
        return (
            f"GroundTruthDataset({self.name!r}, n={len(self)}, shape={self.observation_shape}, "
            f"factors={dict(zip(self.factor_names, self.factor_sizes))}, "
            f"source={self.data_source})"
        )

    # -- factor bookkeeping -------------------------------------------------------------------
    @property
    def factor_names(self) -> list[str]:
        return list(self.table.names)

    @property
    def factor_sizes(self) -> list[int]:
        return list(self.table.sizes)

    @property
    def factor_values(self) -> list[np.ndarray]:
        """One float64 array of label values per factor."""
        return list(self.table.values)

    @property
    def latent_factor_indices(self) -> list[int]:
        return list(self.table.latent)

    @property
    def observation_factor_indices(self) -> list[int]:
        return list(self.table.observation_only)

    @property
    def num_factors(self) -> int:
        return self.table.num_factors

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.images.shape[1:])

    @property
    def num_channels(self) -> int:
        return int(self.images.shape[3])

    @cached_property
    def classes(self) -> np.ndarray:
        """Factor classes of every image, (N, F) int64."""
        return self.table.all_classes()

    @property
    def values(self) -> np.ndarray:
        """Factor label values of every image, (N, F) float64."""
        return self.table.values_of(self.classes)

    def __len__(self) -> int:
        return len(self.images)

    def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
        """Flat indices (n,) int64 of full class vectors (n, F)."""
        return self.table.index_of(factors)

    index_of = factors_to_index

    def index_to_factors(self, index: np.ndarray | int) -> np.ndarray:
        """Full class vectors (n, F) int64 of flat indices."""
        return self.table.classes_of(index)

    # -- images -------------------------------------------------------------------------------
    def get_uint8(self, idx: int | np.ndarray) -> np.ndarray:
        """Image(s) by flat index: (H, W, C) for an int, (n, H, W, C) for an index array; uint8."""
        return np.asarray(self.images[idx])

    def __getitem__(self, idx: int) -> np.ndarray:
        return self.get_uint8(idx)

    def batch(
        self,
        indices: np.ndarray | Sequence[int],
        device: str | torch.device = "cpu",
        pixels: str = "centered",
    ) -> torch.Tensor:
        """Float32 tensor (n, C, H, W) on ``device``: :meth:`gather` then :meth:`to_pixels`.

        The uint8 images are gathered on the host, moved to the device, and only there converted:
        ``x / max_value`` for ``pixels="unit"``, minus 0.5 for ``pixels="centered"``.
        """
        return self.to_pixels(self.gather(indices), device, pixels)

    def gather(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        """The uint8 images at ``indices``, ``(n, H, W, C)`` on the host. NumPy work only, so a
        loader thread can run it beside training without starting a second torch thread pool."""
        return torch.from_numpy(np.ascontiguousarray(self.images[np.asarray(indices)]))

    def to_pixels(
        self, host: torch.Tensor, device: str | torch.device = "cpu", pixels: str = "centered"
    ) -> torch.Tensor:
        """:meth:`gather`'s uint8 ``(n, H, W, C)`` as float32 ``(n, C, H, W)`` on ``device``."""
        if pixels not in PIXEL_MODES:
            raise ValueError(f"pixels must be one of {PIXEL_MODES}, got {pixels!r}")
        x = rearrange(host.to(device, non_blocking=True), "n h w c -> n c h w")
        x = x.float().div_(self.max_value)
        return x.sub_(0.5) if pixels == "centered" else x

    def split(self, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """80/10/10 train/val/test index arrays, identical to ``random_split`` (spec §3)."""
        train, val, test = split_indices(len(self), seed)
        return train, val, test

    def torch_view(self, indices: np.ndarray | None = None, pixels: str = "centered") -> TorchView:
        """A ``torch.utils.data.Dataset`` over ``indices`` (default: every image)."""
        return TorchView(self, indices, pixels)

    # -- metric protocol (spec metrics.md §1) ------------------------------------------------
    def sample_factors(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        """Latent classes (n, num_latent) int64: ``rng.randint(size, size=n)`` per latent factor."""
        return self.table.sample_latent(n, rng)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.RandomState
    ) -> np.ndarray:
        """Images (n, H, W, C) uint8 for latent classes (n, num_latent).

        The observation-only factors (e.g. dSprites colour) are drawn here, one
        ``rng.randint(size, size=n)`` each, as disentanglement_lib does.
        """
        return self.get_uint8(self.table.index_of(self.table.complete(factors, rng)))


class TorchView(torch.utils.data.Dataset):
    """Map-style dataset yielding (image float32 (C, H, W), classes int64 (F,))."""

    def __init__(
        self, data: GroundTruthDataset, indices: np.ndarray | None = None, pixels: str = "centered"
    ) -> None:
        if pixels not in PIXEL_MODES:
            raise ValueError(f"pixels must be one of {PIXEL_MODES}, got {pixels!r}")
        self.data = data
        self.indices = np.arange(len(data)) if indices is None else np.asarray(indices)
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = int(self.indices[i])
        x = self.data.batch([idx], "cpu", self.pixels)[0]
        return x, torch.from_numpy(self.data.index_to_factors(idx)[0])

"""A small learnable procedural set for tests and the CPU demo.

64x64 RGB images of one filled square on black; factors (in storage order):
``x`` (8 centre columns), ``y`` (8 centre rows), ``size`` (side 8, 12, 16 or 20 px) and ``hue``
(8 fully saturated hues), 2048 images in all. The h5 file layout is Shapes3D's
(``images`` (N, 64, 64, 3) uint8, ``labels`` (N, 4) float64).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from fqvae.data.dataset import GroundTruthDataset
from fqvae.data.factors import FactorTable, table_from_labels
from fqvae.data.generators.colour import hsv_rgb
from fqvae.data.io import read_images_h5, write_images_h5

IMAGE_SIZE = 64
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
TOY = FactorTable(
    names=("x", "y", "size", "hue"),
    sizes=(8, 8, 4, 8),
    values=(
        11.0 + 6.0 * np.arange(8),
        11.0 + 6.0 * np.arange(8),
        np.array([8.0, 12.0, 16.0, 20.0]),
        np.arange(8) / 8.0,
    ),
)
# Reduced grid for CI: 3 x 3 x 2 x 3 = 54 images.
CI_GRID: dict[str, Sequence[int]] = {
    "x": (0, 3, 7),
    "y": (0, 4, 7),
    "size": (0, 3),
    "hue": (0, 3, 5),
}


def render(values: np.ndarray) -> np.ndarray:
    """Images (n, 64, 64, 3) uint8 from label values (n, 4) = (x, y, size, hue)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1, 4)
    half = values[:, 2:3] / 2
    coords = np.arange(IMAGE_SIZE) + 0.5
    cols = np.abs(coords[None, :] - values[:, 0:1]) < half
    rows = np.abs(coords[None, :] - values[:, 1:2]) < half
    mask = rows[:, :, None] & cols[:, None, :]
    colour = np.rint(255 * hsv_rgb(values[:, 3])).astype(np.uint8)
    return mask[..., None] * colour[:, None, None, :]


def generate(keep: dict[str, Sequence[int]] | None = None) -> GroundTruthDataset:
    """In-memory toy dataset (optionally a reduced grid), without touching the disk."""
    table, _ = TOY.subset(keep or {})
    images = render(table.values_of(table.all_classes()))
    return GroundTruthDataset("toy", images, table, data_source="procedural")


def make(
    out: str | os.PathLike, keep: dict[str, Sequence[int]] | None = None, seed: int = 0
) -> None:
    """Write the toy set in the Shapes3D h5 layout, atomically. ``seed`` is recorded only."""
    data = generate(keep)
    write_images_h5(
        out,
        [(0, data.images)],
        IMAGE_SHAPE,
        data.values,
        chunk=data.factor_sizes[-1],
        attrs={"data_source": "procedural", "generator": "fqvae toy", "seed": seed},
        desc="toy",
    )


def load(path: str | os.PathLike, allow_reduced: bool = False) -> GroundTruthDataset:
    """Load a toy h5 file written by :func:`make`."""
    images, labels, attrs = read_images_h5(path, IMAGE_SHAPE, TOY.num_factors)
    table = table_from_labels(
        labels, labels, TOY.names, TOY.sizes, allow_reduced=allow_reduced, where=str(path)
    )
    return GroundTruthDataset("toy", images, table, data_source=str(attrs.get("data_source")))

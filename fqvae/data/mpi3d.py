"""MPI3D loader: an ``.npz`` with the single key ``images``; classes follow from the index."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from fqvae.data.dataset import GroundTruthDataset
from fqvae.data.io import open_npz
from fqvae.data.tables import MPI3D_VARIANTS, mpi3d_table

IMAGE_SHAPE = (64, 64, 3)


def variant_sizes(variant: str) -> tuple[int, ...]:
    """Factor sizes of an MPI3D variant; raises ValueError listing the known variants."""
    if variant not in MPI3D_VARIANTS:
        raise ValueError(f"unknown MPI3D variant {variant!r}; known: {sorted(MPI3D_VARIANTS)}")
    return MPI3D_VARIANTS[variant][1]


def resolve_sizes(
    variant: str, factor_sizes: Sequence[int] | None, allow_reduced: bool
) -> tuple[int, ...]:
    """The variant's sizes, or ``factor_sizes`` when given (other sizes need ``allow_reduced``)."""
    sizes = variant_sizes(variant)
    if factor_sizes is None:
        return sizes
    factor_sizes = tuple(int(s) for s in factor_sizes)
    if len(factor_sizes) != len(sizes):
        raise ValueError(f"MPI3D has {len(sizes)} factors, got sizes {factor_sizes}")
    if factor_sizes != sizes and not allow_reduced:
        raise ValueError(
            f"factor sizes {factor_sizes} differ from {sizes} of variant {variant!r} "
            "(pass allow_reduced=True for a reduced stub)"
        )
    return factor_sizes


def load(
    path: str | os.PathLike,
    variant: str = "complex",
    factor_sizes: Sequence[int] | None = None,
    allow_reduced: bool = False,
) -> GroundTruthDataset:
    """Load an MPI3D ``.npz`` fully into memory (members of an npz cannot be memory-mapped).

    The classes of image i are ``np.unravel_index(i, sizes)``; the factor values are the class
    indices because the physical values are not published.
    """
    sizes = resolve_sizes(variant, factor_sizes, allow_reduced)
    n = int(np.prod(sizes))
    expected = f"expected key 'images' ({n}, 64, 64, 3) uint8"
    images = open_npz(path, ["images"], expected)["images"]
    if images.shape != (n, *IMAGE_SHAPE) or images.dtype != np.uint8:
        raise ValueError(f"{path}: 'images' is {images.shape} {images.dtype}; {expected}")
    return GroundTruthDataset("mpi3d", images, mpi3d_table(sizes))

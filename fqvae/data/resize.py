"""Smaller copies of a dataset's images, for CPU recipes that train at a reduced resolution."""

from __future__ import annotations

import numpy as np

from fqvae.data.dataset import GroundTruthDataset

CHUNK = 8192  # images per block: bounds the uint16 intermediate to ~200 MB at 64x64x3


def resize(dataset: GroundTruthDataset, size: int) -> GroundTruthDataset:
    """``dataset`` with every image area-averaged down to ``size x size`` (uint8, rounded).

    ``size`` must divide the native side; the native size returns ``dataset`` itself. The
    factors, labels and index order are unchanged, so the metrics sample the same images.
    """
    height, width, channels = dataset.observation_shape
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"image size must be a positive int, got {size!r}")
    if size == height:
        return dataset
    if height != width or height % size:
        raise ValueError(
            f"image size {size} must divide the native {height}x{width} images of "
            f"{dataset.name!r} (e.g. {height // 2})"
        )
    f = height // size
    out = np.empty((len(dataset), size, size, channels), dtype=np.uint8)
    for start in range(0, len(dataset), CHUNK):
        block = np.asarray(dataset.images[start : start + CHUNK], dtype=np.uint16)
        sums = block.reshape(len(block), size, f, size, f, channels).sum(axis=(2, 4))
        out[start : start + len(block)] = (sums + f * f // 2) // (f * f)
    return GroundTruthDataset(
        dataset.name, out, dataset.table, dataset.max_value, dataset.data_source
    )

"""Isaac3D and Falcor3D: folders of ``%06d.png`` images (128 px) plus a label file.

PNGs are decoded once and resized 128 -> 64 with Pillow ``BICUBIC`` (antialiased when
downscaling); at training time images come from memory or from the ``prepare`` cache.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fqvae.data.dataset import GroundTruthDataset
from fqvae.data.factors import FactorTable, class_values, encode_labels
from fqvae.data.io import ordered_map
from fqvae.data.tables import (
    FALCOR3D_DIR,
    FALCOR3D_NAMES,
    FALCOR3D_SIZES,
    ISAAC3D_DIR,
    ISAAC3D_NAMES,
    ISAAC3D_SIZES,
)

IMAGE_SHAPE = (64, 64, 3)
RESIZE = "PIL.Image.resize BICUBIC (antialiased), 128 -> 64"


@dataclass(frozen=True)
class FolderLayout:
    """Directory name, label file name and factor table of one folder dataset."""

    directory: str
    labels_file: str
    names: tuple[str, ...]
    sizes: tuple[int, ...]


LAYOUTS = {
    "isaac3d": FolderLayout(ISAAC3D_DIR, "labels.npy", ISAAC3D_NAMES, ISAAC3D_SIZES),
    "falcor3d": FolderLayout(FALCOR3D_DIR, "train-rec.labels", FALCOR3D_NAMES, FALCOR3D_SIZES),
}


def dataset_dir(name: str, path: str | os.PathLike) -> Path:
    """The dataset folder: ``path`` itself or ``path/<Isaac3D_down128|Falcor3D_down128>``."""
    path = Path(path)
    nested = path / LAYOUTS[name].directory
    return nested if nested.is_dir() else path


def read_labels(name: str, folder: Path) -> np.ndarray:
    """Label array (N, F) float64.

    Falcor3D's container is unknown: try ``np.load``, then raw float64 values.
    """
    layout = LAYOUTS[name]
    file = folder / layout.labels_file
    if not file.is_file():
        raise FileNotFoundError(f"{name}: label file {file} not found")
    try:
        labels = np.load(file, allow_pickle=False)
    except ValueError:
        if name != "falcor3d":
            raise ValueError(f"{file}: not a readable .npy file") from None
        labels = np.fromfile(file, dtype=np.float64)
        if labels.size % len(layout.sizes):
            raise ValueError(
                f"{file}: {labels.size} float64 values, not a multiple of {len(layout.sizes)}"
            ) from None
        labels = labels.reshape(-1, len(layout.sizes))
    if labels.ndim != 2 or labels.shape[1] != len(layout.sizes):
        raise ValueError(f"{file}: labels are {labels.shape}, expected (N, {len(layout.sizes)})")
    return labels.astype(np.float64)


def label_table(name: str, labels: np.ndarray, sizes: tuple[int, ...]) -> FactorTable:
    """Factor table; warns when the label-encoded classes disagree with the file ids."""
    layout = LAYOUTS[name]
    classes, uniques = encode_labels(labels)
    label_sizes = tuple(len(u) for u in uniques)
    if label_sizes != sizes:
        warnings.warn(
            f"{name}: labels have {label_sizes} distinct values per factor, expected "
            f"{sizes}; using class indices as factor values",
            stacklevel=3,
        )
        return FactorTable(layout.names, sizes, class_values(sizes))
    bad = np.count_nonzero(np.ravel_multi_index(tuple(classes.T), sizes) != np.arange(len(labels)))
    if bad:
        warnings.warn(
            f"{name}: {bad} of {len(labels)} label rows do not match their file id", stacklevel=3
        )
    return FactorTable(layout.names, sizes, uniques)


def _decode(file: Path) -> np.ndarray:
    with Image.open(file) as im:
        im = im.convert("RGB")
        if im.size != IMAGE_SHAPE[:2]:
            im = im.resize(IMAGE_SHAPE[:2], Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


def load(
    name: str,
    path: str | os.PathLike,
    factor_sizes: Sequence[int] | None = None,
    allow_reduced: bool = False,
    out: np.ndarray | None = None,
) -> GroundTruthDataset:
    """Decode a folder dataset once into ``out`` (default: a new in-memory array).

    out: optional writable (N, 64, 64, 3) uint8 array, e.g. the ``prepare`` memmap.
    Reduced ``factor_sizes`` (test stubs) are accepted only with ``allow_reduced=True``.
    """
    layout = LAYOUTS[name]
    sizes = tuple(int(s) for s in (factor_sizes or layout.sizes))
    if len(sizes) != len(layout.sizes) or (sizes != layout.sizes and not allow_reduced):
        raise ValueError(
            f"{name}: factor sizes {sizes}, expected {layout.sizes} "
            "(pass allow_reduced=True for a reduced stub)"
        )
    folder = dataset_dir(name, path)
    image_dir = folder / "images"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{name}: image folder {image_dir} not found")
    n = int(np.prod(sizes))
    files = [image_dir / f"{i:06d}.png" for i in range(n)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ValueError(
            f"{name}: {len(missing)} of {n} images missing in {image_dir} "
            f"(first: {missing[0]}); expected %06d.png for ids 0..{n - 1}"
        )
    labels = read_labels(name, folder)
    if len(labels) != n:
        raise ValueError(f"{name}: {len(labels)} label rows for {n} images")
    table = label_table(name, labels, sizes)
    images = np.empty((n, *IMAGE_SHAPE), np.uint8) if out is None else out
    if images.shape != (n, *IMAGE_SHAPE):
        raise ValueError(f"{name}: output array is {images.shape}, expected {(n, *IMAGE_SHAPE)}")
    for i, image in enumerate(
        tqdm(
            ordered_map(_decode, files, prefetch=64),
            total=n,
            desc=f"decoding {name}",
            unit="img",
            disable=n < 1000,
        )
    ):
        images[i] = image
    return GroundTruthDataset(name, images, table)

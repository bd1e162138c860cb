"""Layout stubs (spec §7): files in the exact real format of MPI3D, Isaac3D and Falcor3D, with
deterministic pattern images. They exercise I/O, resizing, label checks and index maths; they are
not meant for learning.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fqvae.data.factors import FactorTable, class_values
from fqvae.data.folders import LAYOUTS
from fqvae.data.generators.colour import hsv_rgb
from fqvae.data.tables import MPI3D_VARIANTS
from fqvae.files import atomic_path

STUB_NAMES = ("mpi3d", "isaac3d", "falcor3d")


def pattern(classes: np.ndarray, sizes: Sequence[int], size: int) -> np.ndarray:
    """Images (n, size, size, 3) uint8: one horizontal bar per factor, its length and brightness
    set by the factor's class, its hue by the factor's position."""
    classes = np.asarray(classes, dtype=np.int64)
    n, num = classes.shape
    out = np.zeros((n, size, size, 3), dtype=np.uint8)
    edges = np.linspace(0, size, num + 1).astype(int)
    cols = np.arange(size)
    for f, s in enumerate(sizes):
        frac = (classes[:, f] + 1) / s
        colour = 255 * hsv_rgb(np.full(n, f / num)) * (0.4 + 0.6 * frac)[:, None]
        bar = cols[None, :] < np.rint(frac * size)[:, None]
        out[:, edges[f] : edges[f + 1]] = (bar[:, :, None] * colour[:, None, :]).astype(np.uint8)[
            :, None
        ]
    return out


def write_layout_stub(
    name: str,
    root: str | os.PathLike,
    factor_sizes: Sequence[int] | None = None,
    variant: str = "complex",
) -> Path:
    """Write a stub of ``name`` under ``root`` and return the path to pass to the loader.

    MPI3D: ``root/<variant file>.npz`` with key ``images`` (N, 64, 64, 3) uint8.
    Isaac3D / Falcor3D: ``root/<Isaac3D_down128|Falcor3D_down128>/images/%06d.png`` (128 px RGB)
    plus ``labels.npy`` (N, 9) or a raw float64 ``train-rec.labels`` (N, 7); label values are
    ``class / (size - 1)``.
    """
    if name not in STUB_NAMES:
        raise ValueError(f"no layout stub for {name!r}; known: {list(STUB_NAMES)}")
    root = Path(root)
    if name == "mpi3d":
        file, real_sizes = MPI3D_VARIANTS[variant]
        sizes = tuple(factor_sizes or real_sizes)
        classes = FactorTable(
            tuple(map(str, range(len(sizes)))), sizes, class_values(sizes)
        ).all_classes()
        with atomic_path(root / file) as tmp:
            np.savez(tmp, images=pattern(classes, sizes, 64))
        return root / file
    layout = LAYOUTS[name]
    sizes = tuple(factor_sizes or layout.sizes)
    table = FactorTable(layout.names, sizes, tuple(np.arange(s) / max(s - 1, 1) for s in sizes))
    classes = table.all_classes()
    folder = root / layout.directory
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(pattern(classes, sizes, 128)):
        Image.fromarray(image).save(folder / "images" / f"{i:06d}.png")
    labels = table.values_of(classes)
    with atomic_path(folder / layout.labels_file) as tmp:
        if name == "isaac3d":
            with open(tmp, "wb") as fh:
                np.save(fh, labels)
        else:
            labels.tofile(tmp)
    return folder

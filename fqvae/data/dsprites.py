"""dSprites: the real ``.npz`` loader and the procedural replica writer (same layout)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from fqvae.data.dataset import GroundTruthDataset
from fqvae.data.factors import FactorTable, table_from_labels
from fqvae.data.generators.dsprites import IMAGE_SIZE, SpriteGeometry, render_sprites
from fqvae.data.io import open_npz, ordered_map, write_npz_stream
from fqvae.data.tables import DSPRITES

# Reduced grid for CI (spec §5): every 4th orientation and position, 3 x 6 x 10 x 8 x 8 images.
CI_GRID: dict[str, Sequence[int]] = {
    "orientation": range(0, 40, 4),
    "posX": range(0, 32, 4),
    "posY": range(0, 32, 4),
}
_EXPECTED = (
    "expected keys 'imgs' (N, 64, 64) uint8 in {0, 1}, 'latents_values' (N, 6) float "
    "and 'latents_classes' (N, 6) int"
)


def grid(keep: dict[str, Sequence[int]] | None = None) -> tuple[FactorTable, np.ndarray]:
    """Factor table of the (optionally reduced) grid and the original classes (N, 6) int64."""
    table, kept = DSPRITES.subset(keep or {})
    classes = table.all_classes()
    original = np.stack([kept[f][classes[:, f]] for f in range(table.num_factors)], axis=1)
    return table, original


def render_classes(
    classes: np.ndarray,
    keep: dict[str, Sequence[int]] | None = None,
    geometry: SpriteGeometry | None = None,
) -> np.ndarray:
    """Images (n, 64, 64, 1) uint8 of class vectors (n, 6) of the (reduced) grid."""
    table, _ = DSPRITES.subset(keep or {})
    return render_sprites(table.values_of(classes), geometry)[..., None]


def generate(
    keep: dict[str, Sequence[int]] | None = None, geometry: SpriteGeometry | None = None
) -> GroundTruthDataset:
    """In-memory replica of the (reduced) grid, without touching the disk."""
    table, _ = grid(keep)
    images = render_classes(table.all_classes(), keep, geometry)
    return GroundTruthDataset("dsprites", images, table, max_value=1, data_source="procedural")


def make(
    out: str | os.PathLike,
    keep: dict[str, Sequence[int]] | None = None,
    geometry: SpriteGeometry | None = None,
    seed: int = 0,
) -> None:
    """Write the replica as the real dSprites ``.npz`` layout, atomically, with a progress bar.

    ``seed`` is recorded in the metadata; rendering involves no randomness.
    """
    table, original = grid(keep)
    values = table.values_of(table.all_classes())
    per_block = table.sizes[4] * table.sizes[5]  # all positions of one (shape, scale, orientation)
    starts = range(0, table.num_images, per_block)
    metadata = {
        "latents_names": table.names,
        "latents_sizes": np.asarray(table.sizes, dtype=np.int64),
        "latents_possible_values": dict(zip(table.names, table.values)),
        "description": "procedural dSprites replica written by fqvae (not the DeepMind data)",
        "data_source": "procedural",
        "seed": int(seed),
    }
    blocks = ordered_map(lambda s: render_sprites(values[s : s + per_block], geometry), starts)
    write_npz_stream(
        out,
        {
            "latents_values": values,
            "latents_classes": original,
            "metadata": np.array(metadata, dtype=object),
        },
        ("imgs", (table.num_images, IMAGE_SIZE, IMAGE_SIZE), np.uint8, blocks),
        total=table.num_images,
        desc="dsprites",
    )


def load(path: str | os.PathLike, allow_reduced: bool = False) -> GroundTruthDataset:
    """Load a dSprites ``.npz`` (real or replica) into memory.

    The factor grid is read from ``latents_classes``; a grid other than the real one
    (3 x 6 x 40 x 32 x 32) is accepted only with ``allow_reduced=True``.
    """
    npz = open_npz(
        path, ["imgs", "latents_values", "latents_classes"], _EXPECTED, optional=["metadata"]
    )
    imgs, values, classes = npz["imgs"], npz["latents_values"], npz["latents_classes"]
    n = len(imgs)
    if imgs.shape != (n, IMAGE_SIZE, IMAGE_SIZE) or imgs.dtype != np.uint8:
        raise ValueError(f"{path}: 'imgs' is {imgs.shape} {imgs.dtype}; {_EXPECTED}")
    for key, arr in (("latents_values", values), ("latents_classes", classes)):
        if arr.shape != (n, 6):
            raise ValueError(f"{path}: {key!r} is {arr.shape}, expected ({n}, 6); {_EXPECTED}")
    table = table_from_labels(
        classes.astype(np.int64),
        values.astype(np.float64),
        DSPRITES.names,
        DSPRITES.sizes,
        DSPRITES.latent,
        allow_reduced,
        where=str(path),
    )
    if imgs.max(initial=0) > 1:
        raise ValueError(f"{path}: 'imgs' values exceed 1; {_EXPECTED}")
    meta = npz["metadata"].item() if "metadata" in npz else None
    source = meta.get("data_source", "real") if isinstance(meta, dict) else "real"
    return GroundTruthDataset("dsprites", imgs[..., None], table, max_value=1, data_source=source)

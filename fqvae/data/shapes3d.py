"""Shapes3D: the real ``3dshapes.h5`` loader and the procedural replica (same layout)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from fqvae.data.dataset import GroundTruthDataset
from fqvae.data.factors import FactorTable, table_from_labels
from fqvae.data.generators.shapes3d import (
    IMAGE_SIZE,
    Scene,
    add_layer,
    base_layer,
    colorize,
    geometry_buffer,
    palette,
    to_uint8,
)
from fqvae.data.io import ordered_map, read_images_h5, write_images_h5
from fqvae.data.tables import SHAPES3D

IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
# Reduced grid for CI: 2 x 2 x 2 x 2 x 4 x 3 = 192 images, 24 geometries.
CI_GRID: dict[str, Sequence[int]] = {
    "floor_hue": (0, 5),
    "wall_hue": (3, 8),
    "object_hue": (2, 7),
    "scale": (0, 7),
    "orientation": (0, 7, 14),
}


class Renderer:
    """Renders images of a (reduced) Shapes3D grid from cached geometry buffers."""

    def __init__(
        self, keep: dict[str, Sequence[int]] | None = None, scene: Scene | None = None
    ) -> None:
        self.table, _ = SHAPES3D.subset(keep or {})
        self.scene = scene or Scene()
        self._buffers: dict[tuple[int, int, int], np.ndarray] = {}

    @property
    def num_geometries(self) -> int:
        return int(np.prod(self.table.sizes[3:]))

    def buffers(self, geometry: np.ndarray) -> np.ndarray:
        """Buffers (m, 64, 64, 4) float32 of (scale, shape, orientation) classes (m, 3)."""
        keys = [tuple(int(c) for c in row) for row in np.asarray(geometry).reshape(-1, 3)]
        missing = sorted(set(keys) - self._buffers.keys())
        values = self.table.values
        for key, buf in zip(
            missing,
            ordered_map(
                lambda k: geometry_buffer(
                    values[3][k[0]], int(values[4][k[1]]), values[5][k[2]], self.scene
                ),
                missing,
            ),
        ):
            self._buffers[key] = buf
        return (
            np.stack([self._buffers[k] for k in keys])
            if keys
            else np.zeros((0, *IMAGE_SHAPE[:2], 4))
        )

    def render(self, classes: np.ndarray) -> np.ndarray:
        """Images (n, 64, 64, 3) uint8 of class vectors (n, 6) of the grid."""
        classes = np.asarray(classes, dtype=np.int64).reshape(-1, 6)
        hues = self.table.values_of(classes)[:, :3]
        colours = (
            np.stack([palette(*h, scene=self.scene) for h in hues])
            if len(hues)
            else np.zeros((0, 4, 3), np.float32)
        )
        return colorize(self.buffers(classes[:, 3:]), colours)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(start, images) for every (floor hue, wall hue) pair, in storage order.

        Each block holds all object hues and geometries of one pair; the floor and wall layers
        are shared between its images. Pairs are rendered on worker threads.
        """
        geometry = self.table.all_classes()[: self.num_geometries, 3:]
        buffers = self.buffers(geometry)
        layers = [np.ascontiguousarray(buffers[..., c : c + 1]) for c in range(4)]
        n_floor, n_wall = self.table.sizes[:2]
        per_block = self.table.num_images // (n_floor * n_wall)

        def render_pair(pair: tuple[int, int]) -> tuple[int, np.ndarray]:
            f, w = pair
            rgb = [
                palette(self.table.values[0][f], self.table.values[1][w], h, self.scene)
                for h in self.table.values[2]
            ]
            acc = add_layer(
                base_layer(layers[0], layers[3], rgb[0][0], rgb[0][3]), layers[1], rgb[0][1]
            )
            images = np.concatenate([to_uint8(add_layer(acc, layers[2], p[2])) for p in rgb])
            return (f * n_wall + w) * per_block, images

        pairs = [(f, w) for f in range(n_floor) for w in range(n_wall)]
        yield from ordered_map(render_pair, pairs)


def generate(
    keep: dict[str, Sequence[int]] | None = None, scene: Scene | None = None
) -> GroundTruthDataset:
    """In-memory replica of the (reduced) grid, without touching the disk."""
    renderer = Renderer(keep, scene)
    images = np.concatenate([block for _, block in renderer.blocks()])
    return GroundTruthDataset("shapes3d", images, renderer.table, data_source="procedural")


def _chunk_length(per_geometry: int, limit: int = 64) -> int:
    return max(d for d in range(1, limit + 1) if per_geometry % d == 0)


def make(
    out: str | os.PathLike,
    keep: dict[str, Sequence[int]] | None = None,
    scene: Scene | None = None,
    seed: int = 0,
) -> None:
    """Write the replica as the real ``3dshapes.h5`` layout, atomically, with a progress bar.

    ``seed`` is recorded in the file attributes; rendering involves no randomness.
    """
    renderer = Renderer(keep, scene)
    table = renderer.table
    labels = table.values_of(table.all_classes())
    attrs = {"data_source": "procedural", "generator": "fqvae shapes3d replica", "seed": seed}
    write_images_h5(
        out,
        renderer.blocks(),
        IMAGE_SHAPE,
        labels,
        chunk=_chunk_length(renderer.num_geometries),
        attrs=attrs,
        desc="shapes3d",
    )


def load(path: str | os.PathLike, allow_reduced: bool = False) -> GroundTruthDataset:
    """Load a ``3dshapes.h5`` (real or replica) into memory (5.9 GB for the full set).

    The factor grid is read from ``labels``; a grid other than the real one is accepted only with
    ``allow_reduced=True``.
    """
    images, labels, attrs = read_images_h5(path, IMAGE_SHAPE, SHAPES3D.num_factors)
    table: FactorTable = table_from_labels(
        labels, labels, SHAPES3D.names, SHAPES3D.sizes, allow_reduced=allow_reduced, where=str(path)
    )
    return GroundTruthDataset(
        "shapes3d", images, table, data_source=str(attrs.get("data_source", "real"))
    )

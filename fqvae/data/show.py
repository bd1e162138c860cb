"""Factor traversal grids: one row per factor, varying it while the others stay fixed."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from fqvae.data import dsprites, shapes3d, toyset
from fqvae.data.factors import FactorTable
from fqvae.data.registry import check_name, load
from fqvae.data.tables import DSPRITES
from fqvae.files import atomic_path

ImagesOf = Callable[[np.ndarray], np.ndarray]

# Base classes that give a readable scene (distinct hues, a large centred sprite).
DEFAULT_BASE = {"dsprites": (0, 2, 5, 0, 16, 16), "shapes3d": (0, 6, 3, 4, 0, 7)}
LABEL_WIDTH = 96
GAP = 2


def source(
    name: str, path: str | os.PathLike | None = None, **kw: object
) -> tuple[FactorTable, ImagesOf, int]:
    """Factor table, class-vectors -> uint8 images function and max pixel value for ``name``.

    Without ``path`` the procedural datasets are rendered on the fly (no file needed).
    """
    check_name(name)
    if path is None and name == "dsprites":
        return DSPRITES, dsprites.render_classes, 1
    if path is None and name == "shapes3d":
        renderer = shapes3d.Renderer()
        return renderer.table, renderer.render, 255
    if path is None and name == "toy":
        return toyset.TOY, lambda c: toyset.render(toyset.TOY.values_of(c)), 255
    data = load(name, path, **kw)
    return data.table, lambda c: data.get_uint8(data.index_of(c)), data.max_value


def traversal(
    table: FactorTable,
    images_of: ImagesOf,
    max_value: int,
    base: Sequence[int] | None = None,
    max_cols: int = 10,
) -> Image.Image:
    """RGB grid image: a labelled row per factor of size > 1, up to ``max_cols`` classes each."""
    base = np.asarray(base if base is not None else [s // 2 for s in table.sizes], dtype=np.int64)
    if base.shape != (table.num_factors,) or (base < 0).any() or (base >= table.sizes).any():
        raise ValueError(f"base classes must be {table.num_factors} values within {table.sizes}")
    rows = [f for f in range(table.num_factors) if table.sizes[f] > 1]
    h, w = None, None
    cells = []
    for f in rows:
        cls = np.unique(np.rint(np.linspace(0, table.sizes[f] - 1, min(table.sizes[f], max_cols))))
        classes = np.repeat(base[None], len(cls), axis=0)
        classes[:, f] = cls
        images = np.asarray(images_of(classes), dtype=np.float64) * (255.0 / max_value)
        images = np.broadcast_to(images, (*images.shape[:3], 3)).astype(np.uint8)
        h, w = images.shape[1:3]
        cells.append(images)
    grid = Image.new("RGB", (LABEL_WIDTH + max_cols * (w + GAP), len(rows) * (h + GAP)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (f, images) in enumerate(zip(rows, cells)):
        y = r * (h + GAP)
        draw.text((4, y + h // 2 - 6), f"{table.names[f]} ({table.sizes[f]})", fill="black")
        for c, image in enumerate(images):
            grid.paste(Image.fromarray(image), (LABEL_WIDTH + c * (w + GAP), y))
    return grid


def write_traversal(
    name: str,
    out: str | os.PathLike,
    path: str | os.PathLike | None = None,
    base: Sequence[int] | None = None,
    max_cols: int = 10,
    **kw: object,
) -> None:
    """Write the traversal grid of ``name`` as a PNG at ``out`` (atomically)."""
    table, images_of, max_value = source(name, path, **kw)
    preferred = DEFAULT_BASE.get(name)
    if base is None and preferred and all(c < s for c, s in zip(preferred, table.sizes)):
        base = preferred
    grid = traversal(table, images_of, max_value, base, max_cols)
    with atomic_path(out) as tmp:
        grid.save(tmp, format="PNG", optimize=True)

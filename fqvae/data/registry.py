"""Dataset names, path lookup, ``load``, ``make`` and ``prepare``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fqvae.data import cache, dsprites, folders, mpi3d, shapes3d, toyset
from fqvae.data.dataset import GroundTruthDataset
from fqvae.data.factors import FactorTable, class_values
from fqvae.data.resize import resize
from fqvae.data.tables import (
    DSPRITES,
    DSPRITES_FILE,
    MPI3D_VARIANTS,
    SHAPES3D,
    SHAPES3D_FILE,
    mpi3d_table,
)

DATASETS = ("dsprites", "shapes3d", "mpi3d", "isaac3d", "falcor3d", "toy")
GENERATED = ("dsprites", "shapes3d", "toy")
ENV_ROOT = "FQVAE_DATA_ROOT"

_MAKERS: dict[str, Callable[..., None]] = {
    "dsprites": dsprites.make,
    "shapes3d": shapes3d.make,
    "toy": toyset.make,
}
_GRIDS = {"dsprites": dsprites.CI_GRID, "shapes3d": shapes3d.CI_GRID, "toy": toyset.CI_GRID}


def check_name(name: str) -> str:
    """``name`` if known; otherwise ValueError listing the known datasets."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return name


def table(name: str) -> FactorTable:
    """The factor table of the full dataset ``name`` (MPI3D: the "complex" release); the facts
    settings derive from (latent count, image count) without loading any data."""
    check_name(name)
    if name in folders.LAYOUTS:
        layout = folders.LAYOUTS[name]
        return FactorTable(layout.names, layout.sizes, class_values(layout.sizes))
    return {
        "dsprites": DSPRITES,
        "shapes3d": SHAPES3D,
        "mpi3d": mpi3d_table(MPI3D_VARIANTS["complex"][1]),
        "toy": toyset.TOY,
    }[name]


def default_filename(name: str, variant: str = "complex") -> str:
    """File or folder name of ``name`` inside a data root."""
    if name == "mpi3d":
        mpi3d.variant_sizes(variant)
        return MPI3D_VARIANTS[variant][0]
    return {
        "dsprites": DSPRITES_FILE,
        "shapes3d": SHAPES3D_FILE,
        "isaac3d": folders.LAYOUTS["isaac3d"].directory,
        "falcor3d": folders.LAYOUTS["falcor3d"].directory,
        "toy": "toy.h5",
    }[name]


def how_to_get(name: str, target: Path) -> str:
    """The command that makes a replica at ``target``, or how to obtain the real files."""
    if name in GENERATED:
        return f"make a procedural replica with: fqvae data make {name} --out {target}"
    return (
        f"{name} has no procedural replica; place the real files there (or a prepared cache "
        f"from: fqvae data prepare {name} --src SRC --out DIR)"
    )


def resolve(name: str, path: str | os.PathLike | None, variant: str = "complex") -> Path:
    """Locate the data: ``path``, else ``$FQVAE_DATA_ROOT``; a directory is searched for the
    dataset's file name or a prepared cache (``<root>/<name>/meta.json``).

    Raises FileNotFoundError naming the expected path and how to create it.
    """
    check_name(name)
    root = path if path is not None else os.environ.get(ENV_ROOT)
    filename = default_filename(name, variant)
    if root is None:
        raise FileNotFoundError(
            f"{name}: no path given and ${ENV_ROOT} is not set; expected a file or folder "
            f"named {filename!r}; {how_to_get(name, Path(filename))}"
        )
    root = Path(root)
    if root.is_dir() and not cache.is_cache(root):
        if cache.is_cache(root / name):
            return root / name
        if (root / filename).exists():
            return root / filename
        if name in folders.LAYOUTS and (root / "images").is_dir():
            return root
        raise FileNotFoundError(
            f"{name}: {root / filename} not found; {how_to_get(name, root / filename)}"
        )
    if not root.exists():
        raise FileNotFoundError(f"{name}: {root} not found; {how_to_get(name, root)}")
    return root


def load(name: str, path: str | os.PathLike | None = None, **kw: Any) -> GroundTruthDataset:
    """Load dataset ``name`` from ``path`` (file, folder, data root or prepared cache).

    Without ``path`` the root is ``$FQVAE_DATA_ROOT``; ``toy`` without either is generated in
    memory (``keep=`` selects a reduced grid). Other keyword arguments go to the dataset's loader
    (``allow_reduced``, ``variant``, ``factor_sizes``).
    """
    check_name(name)
    if name == "toy" and path is None and ENV_ROOT not in os.environ:
        return toyset.generate(kw.get("keep"))
    location = resolve(name, path, kw.get("variant", "complex"))
    if cache.is_cache(location):
        return cache.load_cache(location, name)
    if name == "dsprites":
        return dsprites.load(location, **kw)
    if name == "shapes3d":
        return shapes3d.load(location, **kw)
    if name == "toy":
        return toyset.load(location, **kw)
    if name == "mpi3d":
        return mpi3d.load(location, **kw)
    return folders.load(name, location, **kw)


def make(
    name: str, out: str | os.PathLike, seed: int = 0, reduced: bool = False, **kw: Any
) -> Path:
    """Write the procedural replica of ``name`` to ``out`` in the real file layout.

    reduced: write the small CI grid instead of the full one. Returns the written path.
    """
    check_name(name)
    if name not in _MAKERS:
        raise ValueError(
            f"{name} has no procedural generator; generated datasets: "
            f"{', '.join(GENERATED)} (tests use fqvae.data.write_layout_stub)"
        )
    if reduced and "keep" in kw:
        raise ValueError("pass either reduced=True or keep=..., not both")
    keep = _GRIDS[name] if reduced else kw.pop("keep", None)
    _MAKERS[name](out, keep=keep, seed=seed, **kw)
    return Path(out)


def prepare(name: str, src: str | os.PathLike, out: str | os.PathLike, **kw: Any) -> Path:
    """Convert the original files of ``name`` at ``src`` into a cache directory ``out``
    (``image_size``: images area-averaged to that side, see :func:`fqvae.data.resize`)."""
    check_name(name)
    image_size = kw.pop("image_size", None)
    if image_size is not None:
        data = resize(load(name, src, **kw), image_size)
        cache.write_cache(out, data, {"source": str(src), "image_size": image_size})
        return Path(out)
    location = resolve(name, src, kw.get("variant", "complex"))
    extra: dict[str, Any] = {"source": str(location), "source_bytes": cache.source_sizes(location)}
    if name in folders.LAYOUTS:
        n = int(np.prod(kw.get("factor_sizes") or folders.LAYOUTS[name].sizes))
        target = cache.create_images(out, n, folders.IMAGE_SHAPE)
        try:
            data = folders.load(name, location, out=target, **kw)
            cache.write_cache(out, data, {**extra, "resize": folders.RESIZE}, images_file=target)
        finally:
            Path(target.filename).unlink(missing_ok=True)
    else:
        cache.write_cache(out, load(name, location, **kw), extra)
    return Path(out)

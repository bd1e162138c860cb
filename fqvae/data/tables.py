"""Factor tables of the supported datasets (spec ``datasets.md`` §2) and their file names."""

from __future__ import annotations

import numpy as np

from fqvae.data.factors import FactorTable, class_values, linspace_values

DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
SHAPES3D_FILE = "3dshapes.h5"

DSPRITES = FactorTable(
    names=("color", "shape", "scale", "orientation", "posX", "posY"),
    sizes=(1, 3, 6, 40, 32, 32),
    values=(
        np.array([1.0]),
        np.array([1.0, 2.0, 3.0]),
        *linspace_values((0.5, 1.0, 6), (0.0, 2 * np.pi, 40), (0.0, 1.0, 32), (0.0, 1.0, 32)),
    ),
    latent=(1, 2, 3, 4, 5),
)

SHAPES3D = FactorTable(
    names=("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
    sizes=(10, 10, 10, 8, 4, 15),
    values=linspace_values(
        (0.0, 0.9, 10),
        (0.0, 0.9, 10),
        (0.0, 0.9, 10),
        (0.75, 1.25, 8),
        (0.0, 3.0, 4),
        (-30.0, 30.0, 15),
    ),
)
SHAPES3D_SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")

_MPI3D_NAMES = (
    "object_color",
    "object_shape",
    "object_size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
)
# variant -> (file name, factor sizes); the last release has 6 colours and 6 shapes.
MPI3D_VARIANTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "complex": ("real3d_complicated_shapes_ordered.npz", (4, 4, 2, 3, 3, 40, 40)),
    "toy": ("mpi3d_toy.npz", (6, 6, 2, 3, 3, 40, 40)),
    "realistic": ("mpi3d_realistic.npz", (6, 6, 2, 3, 3, 40, 40)),
    "real": ("mpi3d_real.npz", (6, 6, 2, 3, 3, 40, 40)),
}


def mpi3d_table(sizes: tuple[int, ...]) -> FactorTable:
    """MPI3D factor table for the given sizes; values are the class indices."""
    return FactorTable(names=_MPI3D_NAMES, sizes=tuple(sizes), values=class_values(sizes))


ISAAC3D_DIR = "Isaac3D_down128"
ISAAC3D_NAMES = (
    "object_shape",
    "robot_x",
    "robot_y",
    "camera_height",
    "object_scale",
    "lighting_intensity",
    "lighting_y_dir",
    "object_color",
    "wall_color",
)
ISAAC3D_SIZES = (3, 8, 5, 4, 4, 4, 6, 4, 4)

FALCOR3D_DIR = "Falcor3D_down128"
FALCOR3D_NAMES = (
    "lighting_intensity",
    "lighting_x",
    "lighting_y",
    "lighting_z",
    "camera_x",
    "camera_y",
    "camera_z",
)
FALCOR3D_SIZES = (5, 6, 6, 6, 6, 6, 6)

"""Vectorised ray intersections with the primitives of the Shapes3D-like scene (y up).

Every function takes ray origins ``o`` (M, 3) or (3,) and unit directions ``d`` (M, 3), and
returns the hit distance ``t`` (M,) (``inf`` for a miss) and, where useful, normals (M, 3).
Objects stand on the floor (y = 0) centred on the y axis.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-9


def nearest(*hits: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The closest of several (t, normal) hits, per ray."""
    t, normal = hits[0]
    for t_other, n_other in hits[1:]:
        closer = t_other < t
        t = np.where(closer, t_other, t)
        normal = np.where(closer[:, None], n_other, normal)
    return t, normal


def _positive(t: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(t) & (t > 1e-6), t, np.inf)


def plane(o: np.ndarray, d: np.ndarray, axis: int, offset: float) -> np.ndarray:
    """Distance along the rays to the plane ``p[axis] == offset``."""
    o = np.broadcast_to(o, d.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _positive((offset - o[:, axis]) / d[:, axis])


def box(o: np.ndarray, d: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned cube of half edge ``half`` resting on the floor (slab test)."""
    o = np.broadcast_to(o, d.shape)
    lo = np.array([-half, 0.0, -half])
    hi = np.array([half, 2 * half, half])
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(d) < _EPS, _EPS, d)
        t1, t2 = (lo - o) * inv, (hi - o) * inv
    tnear, tfar = np.minimum(t1, t2), np.maximum(t1, t2)
    t_in = tnear.max(axis=1)
    axis = tnear.argmax(axis=1)
    hit = (t_in <= tfar.min(axis=1)) & (t_in > 1e-6)
    normal = np.zeros_like(d)
    rows = np.arange(len(d))
    normal[rows, axis] = -np.sign(d[rows, axis])
    return np.where(hit, t_in, np.inf), normal


def sphere(
    o: np.ndarray, d: np.ndarray, centre: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sphere given by centre (3,) and radius."""
    oc = np.broadcast_to(o, d.shape) - centre
    b = np.einsum("ij,ij->i", oc, d)
    c = np.einsum("ij,ij->i", oc, oc) - radius**2
    disc = b * b - c
    t = _positive(np.where(disc >= 0, -b - np.sqrt(np.maximum(disc, 0.0)), np.inf))
    normal = (oc + np.where(np.isfinite(t), t, 0.0)[:, None] * d) / radius
    return t, np.where(np.isfinite(t)[:, None], normal, 0.0)


def _tube(
    o: np.ndarray, d: np.ndarray, radius: float, y0: float, y1: float
) -> tuple[np.ndarray, np.ndarray]:
    """Open vertical cylinder side of ``radius`` between heights y0 and y1."""
    o = np.broadcast_to(o, d.shape)
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - radius**2
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    t = _positive(np.where((disc >= 0) & (a > _EPS), t, np.inf))
    y = o[:, 1] + np.where(np.isfinite(t), t, 0.0) * d[:, 1]
    t = np.where((y >= y0) & (y <= y1), t, np.inf)
    p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    normal = np.stack([p[:, 0], np.zeros(len(d)), p[:, 2]], axis=1) / radius
    return t, normal


def _disc(
    o: np.ndarray, d: np.ndarray, radius: float, y: float, up: float
) -> tuple[np.ndarray, np.ndarray]:
    o = np.broadcast_to(o, d.shape)
    t = plane(o, d, 1, y)
    p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    t = np.where(p[:, 0] ** 2 + p[:, 2] ** 2 <= radius**2, t, np.inf)
    normal = np.zeros_like(d)
    normal[:, 1] = up
    return t, normal


def cylinder(
    o: np.ndarray, d: np.ndarray, radius: float, height: float
) -> tuple[np.ndarray, np.ndarray]:
    """Closed vertical cylinder standing on the floor."""
    return nearest(
        _tube(o, d, radius, 0.0, height),
        _disc(o, d, radius, height, 1.0),
        _disc(o, d, radius, 0.0, -1.0),
    )


def capsule(
    o: np.ndarray, d: np.ndarray, radius: float, height: float
) -> tuple[np.ndarray, np.ndarray]:
    """Vertical capsule of total ``height`` standing on the floor (tube plus two half spheres)."""
    return nearest(
        _tube(o, d, radius, radius, height - radius),
        sphere(o, d, np.array([0.0, radius, 0.0]), radius),
        sphere(o, d, np.array([0.0, height - radius, 0.0]), radius),
    )

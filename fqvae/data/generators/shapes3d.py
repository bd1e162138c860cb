"""Shapes3D-like renderer built on geometry buffers (spec ``datasets.md`` §6).

Geometry depends only on (scale, shape, orientation). For each such combination we ray-cast the
scene once into a buffer ``G`` of shape (64, 64, 4) float32: channels 0-2 hold, for the floor, the
walls and the object, the mean over 2x2 sub-pixel rays of ``[region == r] * shade``; channel 3
holds the sky coverage. An image for hues (h_floor, h_wall, h_object) is then
``round(255 * clip(G @ P, 0, 1))`` where the rows of P are ``hsv_to_rgb(h, 1, 1)`` and the fixed
sky colour.

The scene is calibrated on the real reference images: a room with a back wall and two side walls
of finite height under a pale sky, the object standing at the origin, and a camera orbiting the
object by the orientation angle (orientation 0 faces the back wall).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fqvae.data.generators import raycast
from fqvae.data.generators.colour import hsv_rgb

IMAGE_SIZE = 64


@dataclass(frozen=True)
class Scene:
    """Scene, camera and lighting constants (lengths in scene units, y up)."""

    fov_deg: float = 63.4
    camera_distance: float = 2.88
    camera_height: float = 0.86
    target_height: float = 1.09
    back_wall_z: float = -9.77
    side_wall_x: float = 10.4
    wall_height: float = 5.73
    cube_edge: float = 1.0
    cylinder_radius: float = 0.5
    cylinder_height: float = 1.0
    sphere_radius: float = 0.56
    capsule_radius: float = 0.45
    capsule_height: float = 1.95
    ambient: float = 0.33
    headlight: float = 0.62
    light: tuple[float, float, float] = (-0.8, 1.0, -0.35)
    diffuse: float = 0.9
    light_spread_deg: float = 10.0  # the light must point upwards (positive y)
    light_samples: int = 8
    spot_radius: float = 7.0
    sky_rgb: tuple[float, float, float] = (0.6, 0.886, 0.976)
    rays_per_axis: int = 2


def _camera_rays(orientation_deg: float, scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera origin (3,), unit ray directions (64 * 64 * k * k, 3) in pixel-major order, and
    the unit viewing direction (3,)."""
    phi = np.radians(orientation_deg)
    eye = np.array(
        [
            scene.camera_distance * np.sin(phi),
            scene.camera_height,
            scene.camera_distance * np.cos(phi),
        ]
    )
    forward = np.array([0.0, scene.target_height, 0.0]) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    k = scene.rays_per_axis
    sub = (np.arange(IMAGE_SIZE * k) + 0.5) / (IMAGE_SIZE * k)  # sub-pixel centres in [0, 1]
    half = np.tan(np.radians(scene.fov_deg) / 2)
    px = (2 * sub - 1) * half
    py = (1 - 2 * sub) * half
    dirs = forward + px[None, :, None] * right + py[:, None, None] * up  # (rows, cols, 3)
    # Reorder so that the k x k rays of one pixel are contiguous: (64, 64, k*k, 3).
    dirs = dirs.reshape(IMAGE_SIZE, k, IMAGE_SIZE, k, 3).transpose(0, 2, 1, 3, 4)
    dirs = dirs.reshape(-1, 3)
    return eye, dirs / np.linalg.norm(dirs, axis=1, keepdims=True), forward


def _object_hit(
    shape: int, scale: float, o: np.ndarray, d: np.ndarray, scene: Scene
) -> tuple[np.ndarray, np.ndarray]:
    if shape == 0:
        return raycast.box(o, d, scene.cube_edge * scale / 2)
    if shape == 1:
        return raycast.cylinder(o, d, scene.cylinder_radius * scale, scene.cylinder_height * scale)
    if shape == 2:
        r = scene.sphere_radius * scale
        return raycast.sphere(o, d, np.array([0.0, r, 0.0]), r)
    if shape == 3:
        return raycast.capsule(o, d, scene.capsule_radius * scale, scene.capsule_height * scale)
    raise ValueError(f"shape class must be 0..3, got {shape}")


def _object_bounds(shape: int, scale: float, scene: Scene) -> tuple[float, float]:
    """Horizontal radius and height bounding the object."""
    radius, height = {
        0: (scene.cube_edge / np.sqrt(2.0), scene.cube_edge),
        1: (scene.cylinder_radius, scene.cylinder_height),
        2: (scene.sphere_radius, 2 * scene.sphere_radius),
        3: (scene.capsule_radius, scene.capsule_height),
    }[shape]
    return radius * scale, height * scale


def _room_hit(
    o: np.ndarray, d: np.ndarray, scene: Scene
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest floor or wall hit: t (M,), normal (M, 3) and is_floor (M,) bool."""
    candidates = (
        (1, 0.0, (0.0, 1.0, 0.0)),
        (2, scene.back_wall_z, (0.0, 0.0, 1.0)),
        (0, -scene.side_wall_x, (1.0, 0.0, 0.0)),
        (0, scene.side_wall_x, (-1.0, 0.0, 0.0)),
    )
    ts, normals = [], []
    for axis, offset, normal in candidates:
        t = raycast.plane(o, d, axis, offset)
        p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
        inside = (np.abs(p[:, 0]) <= scene.side_wall_x + 1e-9) & (
            p[:, 2] >= scene.back_wall_z - 1e-9
        )
        inside &= (p[:, 1] >= -1e-9) & (p[:, 1] <= scene.wall_height)
        ts.append(np.where(inside, t, np.inf))
        normals.append(np.broadcast_to(np.array(normal), d.shape))
    t, n = raycast.nearest(*zip(ts, normals))
    return t, n, np.isfinite(t) & (ts[0] == t)


def _light_directions(scene: Scene) -> np.ndarray:
    """Unit directions (K, 3) spread over a cone around ``scene.light`` (an area light)."""
    centre = np.asarray(scene.light, dtype=np.float64)
    centre /= np.linalg.norm(centre)
    u = np.cross(centre, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u)
    v = np.cross(centre, u)
    k = np.arange(scene.light_samples)
    radius = np.tan(np.radians(scene.light_spread_deg)) * np.sqrt((k + 0.5) / len(k))
    angle = k * np.pi * (3.0 - np.sqrt(5.0))  # golden-angle spiral over the light's disc
    dirs = centre + radius[:, None] * (np.cos(angle)[:, None] * u + np.sin(angle)[:, None] * v)
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def geometry_buffer(
    scale: float, shape: int, orientation_deg: float, scene: Scene | None = None
) -> np.ndarray:
    """Geometry buffer (64, 64, 4) float32: shaded floor, wall, object coverage and sky coverage.

    shade = ambient + headlight * max(0, -n . forward) + diffuse * max(0, n . light) * lit * spot:
    a directional headlight plus a soft spot light from the upper left. ``lit`` is the fraction
    of the spot light's directions not blocked by the object (soft shadows on the floor and
    walls); ``spot = 1 / (1 + r^2 / spot_radius^2)`` dims it with the horizontal distance r from
    the object, so the far walls are lit mostly by the headlight.
    """
    scene = scene or Scene()
    eye, d, forward = _camera_rays(orientation_deg, scene)
    light = np.asarray(scene.light, dtype=np.float64)
    light /= np.linalg.norm(light)
    t_obj, n_obj = _object_hit(shape, scale, eye, d, scene)
    t_room, n_room, is_floor = _room_hit(eye, d, scene)

    on_object = t_obj < t_room
    on_room = ~on_object & np.isfinite(t_room)
    normal = np.where(on_object[:, None], n_obj, n_room)
    lit = np.ones(len(d))
    t_hit = np.where(on_object, t_obj, np.where(on_room, t_room, 0.0))
    points = eye + t_hit[:, None] * d + 1e-6 * n_room
    spot = 1.0 / (1.0 + (points[:, 0] ** 2 + points[:, 2] ** 2) / scene.spot_radius**2)
    directions = _light_directions(scene)
    # Only points within this horizontal distance of the object can be shadowed by it.
    radius, height = _object_bounds(shape, scale, scene)
    reach = radius + height * np.max(
        np.linalg.norm(directions[:, [0, 2]], axis=1) / directions[:, 1]
    )
    candidates = np.nonzero(on_room & (points[:, 0] ** 2 + points[:, 2] ** 2 <= reach**2))[0]
    for direction in directions:
        blocked, _ = _object_hit(
            shape,
            scale,
            points[candidates],
            np.broadcast_to(direction, (len(candidates), 3)),
            scene,
        )
        lit[candidates] -= np.isfinite(blocked) / scene.light_samples
    shade = (
        scene.ambient
        + scene.headlight * np.maximum(-normal @ forward, 0.0)
        + scene.diffuse * np.maximum(normal @ light, 0.0) * lit * spot
    )

    region = np.stack([on_room & is_floor, on_room & ~is_floor, on_object], axis=1)
    channels = np.concatenate([region * shade[:, None], ~(on_object | on_room)[:, None]], axis=1)
    k2 = scene.rays_per_axis**2
    return channels.reshape(IMAGE_SIZE, IMAGE_SIZE, k2, 4).mean(axis=2).astype(np.float32)


def palette(
    floor_hue: float, wall_hue: float, object_hue: float, scene: Scene | None = None
) -> np.ndarray:
    """Colour matrix P (4, 3) float32: floor, wall and object colours, then the sky colour."""
    scene = scene or Scene()
    hues = hsv_rgb(np.array([floor_hue, wall_hue, object_hue]))
    return np.concatenate([hues, [scene.sky_rgb]]).astype(np.float32)


def colorize(buffers: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Images (..., 64, 64, 3) uint8 from buffers (..., 64, 64, 4) and palettes (..., 4, 3).

    The layers are accumulated in a fixed order (floor and sky, wall, object) in float32, so the
    streaming writer, which shares partial sums between images, produces identical bytes.
    """
    buffers = np.asarray(buffers, dtype=np.float32)
    rgb = np.asarray(colours, dtype=np.float32)[..., None, None, :, :]
    layer = [buffers[..., c : c + 1] for c in range(4)]
    acc = base_layer(layer[0], layer[3], rgb[..., 0, :], rgb[..., 3, :])
    acc = add_layer(acc, layer[1], rgb[..., 1, :])
    return to_uint8(add_layer(acc, layer[2], rgb[..., 2, :]))


def base_layer(
    floor: np.ndarray, sky: np.ndarray, floor_rgb: np.ndarray, sky_rgb: np.ndarray
) -> np.ndarray:
    """Floor plus sky contribution (..., 64, 64, 3) float32 from (..., 64, 64, 1) layers."""
    return floor * floor_rgb + sky * sky_rgb


def add_layer(acc: np.ndarray, layer: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """``acc`` plus a (..., 64, 64, 1) buffer layer coloured ``rgb``."""
    return acc + layer * rgb


def to_uint8(linear: np.ndarray) -> np.ndarray:
    """``round(255 * clip(linear, 0, 1))`` as uint8."""
    return np.rint(np.clip(linear, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)

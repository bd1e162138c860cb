"""Shapes3D-like replica: h5 layout, geometry buffers, factors and the real-file loader."""

import h5py
import numpy as np
import pytest

from fqvae.data import shapes3d
from fqvae.data.generators.shapes3d import Scene, geometry_buffer
from fqvae.data.tables import SHAPES3D


@pytest.fixture(scope="module")
def replica_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("shapes3d") / "3dshapes.h5"
    shapes3d.make(path, keep=shapes3d.CI_GRID)
    return path


@pytest.fixture(scope="module")
def renderer():
    return shapes3d.Renderer()


def test_h5_layout_matches_the_real_file(replica_file):
    with h5py.File(replica_file, "r") as f:
        assert set(f.keys()) == {"images", "labels"}
        images, labels = f["images"], f["labels"]
        assert images.shape == (192, 64, 64, 3) and images.dtype == np.uint8
        assert labels.shape == (192, 6) and labels.dtype == np.float64
        table, kept = SHAPES3D.subset(shapes3d.CI_GRID)
        classes = table.all_classes()
        assert np.array_equal(labels[:], table.values_of(classes))
        original = np.stack([kept[f][classes[:, f]] for f in range(6)], axis=1)
        assert np.allclose(labels[:], SHAPES3D.values_of(original))
        assert f.attrs["data_source"] == "procedural"


def test_loader_reads_the_replica(replica_file):
    ds = shapes3d.load(replica_file, allow_reduced=True)
    assert ds.factor_names == list(SHAPES3D.names)
    assert ds.factor_sizes == [2, 2, 2, 2, 4, 3]
    assert ds.observation_shape == (64, 64, 3) and ds.max_value == 255
    assert ds.data_source == "procedural"
    assert ds.factor_values[5].tolist() == [-30.0, 0.0, 30.0]
    assert ds.factor_values[3].tolist() == [0.75, 1.25]
    renderer = shapes3d.Renderer(shapes3d.CI_GRID)
    idx = np.array([0, 17, 100, 191])
    assert np.array_equal(ds.get_uint8(idx), renderer.render(ds.index_to_factors(idx)))
    with pytest.raises(ValueError, match="allow_reduced"):
        shapes3d.load(replica_file)


def test_make_is_deterministic(tmp_path, replica_file):
    again = tmp_path / "again.h5"
    shapes3d.make(again, keep=shapes3d.CI_GRID)
    with h5py.File(again, "r") as a, h5py.File(replica_file, "r") as b:
        assert np.array_equal(a["images"][:], b["images"][:])


def test_streaming_writer_equals_per_image_rendering():
    keep = {
        "floor_hue": [1, 8],
        "wall_hue": [4],
        "object_hue": [0, 6, 9],
        "scale": [2],
        "shape": [1, 3],
        "orientation": [5, 11],
    }
    ds = shapes3d.generate(keep)
    renderer = shapes3d.Renderer(keep)
    assert np.array_equal(ds.images, renderer.render(ds.classes))


def test_each_factor_changes_the_image(renderer):
    base = np.array([0, 6, 3, 4, 0, 7])
    image = renderer.render(base[None])[0]
    assert np.array_equal(image, renderer.render(base[None])[0])
    for f, size in enumerate(SHAPES3D.sizes):
        for c in {0, size // 2, size - 1} - {base[f]}:
            changed = base.copy()
            changed[f] = c
            assert not np.array_equal(image, renderer.render(changed[None])[0]), (f, c)


def test_hue_changes_leave_the_region_masks_unchanged(renderer):
    """The pixels a hue factor changes are exactly its region, whatever the other hues."""
    buffer = geometry_buffer(SHAPES3D.values[3][4], 3, SHAPES3D.values[5][7])
    for base in ([0, 6, 3, 4, 3, 7], [5, 1, 8, 4, 3, 7], [9, 9, 0, 4, 3, 7]):
        base = np.array(base)
        image = renderer.render(base[None])[0]
        for region in range(3):
            other = base.copy()
            other[region] = (base[region] + 4) % 10
            changed = (renderer.render(other[None])[0] != image).any(axis=-1)
            assert not (changed & (buffer[..., region] == 0)).any()
            assert changed[buffer[..., region] > 0.1].all()


def test_orientation_moves_the_wall_corner():
    def corner_column(orientation):
        wall = geometry_buffer(1.0, 2, orientation)[20, :, 1]  # a row through the walls
        steps = np.abs(np.diff(wall))
        return int(np.argmax(steps)) if steps.max() > 0.05 else None

    left, right = corner_column(30.0), corner_column(-30.0)
    assert left is not None and right is not None
    assert left < 32 < right
    assert corner_column(-25.714285714285715) > right


def test_shapes_are_distinct_and_shaded():
    masks = [geometry_buffer(1.0, s, -30.0)[..., 2] for s in range(4)]
    for i in range(4):
        inside = masks[i] > 0
        interior = (
            inside[1:-1, 1:-1]
            & inside[:-2, 1:-1]
            & inside[2:, 1:-1]
            & inside[1:-1, :-2]
            & inside[1:-1, 2:]
        )
        assert masks[i][1:-1, 1:-1][interior].std() > 0.02  # shaded, not flat
        for j in range(i):
            assert ((masks[i] > 0) != (masks[j] > 0)).sum() > 20
    heights = [np.nonzero((m > 0).any(axis=1))[0] for m in masks]
    assert heights[3].size > heights[2].size  # the capsule is the tallest
    widths = [np.nonzero((m > 0).any(axis=0))[0].size for m in masks]
    assert widths[3] < widths[2]  # the capsule is slimmer than the sphere


def test_object_casts_a_shadow_on_the_floor():
    with_object = geometry_buffer(1.25, 3, 0.0)[..., 0]
    far = Scene(capsule_height=1e-3, capsule_radius=1e-4)
    without = geometry_buffer(1.25, 3, 0.0, far)[..., 0]
    floor = (with_object > 0) & (without > 0)
    assert (without[floor] - with_object[floor]).max() > 0.3


@pytest.mark.slow
def test_full_geometry_set(renderer):
    """Renders all 480 geometries: rotationally symmetric shapes keep their silhouette."""
    table = renderer.table
    geometry = table.all_classes()[:480, 3:]
    buffers = renderer.buffers(geometry).reshape(8, 4, 15, 64, 64, 4)
    assert np.isfinite(buffers).all() and buffers.min() >= 0
    coverage = buffers[..., :4].sum(axis=-1)
    assert np.all(coverage < 1.6)
    silhouettes = buffers[..., 2] > 0
    assert silhouettes.any(axis=(3, 4)).all()
    for shape in (1, 2, 3):
        assert (silhouettes[:, shape] == silhouettes[:, shape, :1]).all()
    assert not (silhouettes[:, 0] == silhouettes[:, 0, :1]).all()
    area = silhouettes.sum(axis=(3, 4))
    assert (np.diff(area, axis=0) > 0).all()  # larger scale, larger object


def test_truncated_or_wrong_h5_raises_value_error(tmp_path, replica_file):
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(replica_file.read_bytes()[:5000])
    with pytest.raises(ValueError, match="images"):
        shapes3d.load(truncated)
    with h5py.File(tmp_path / "keys.h5", "w") as f:
        f["imgs"] = np.zeros((2, 64, 64, 3), np.uint8)
        f["labels"] = np.zeros((2, 6))
    with pytest.raises(ValueError, match="missing key 'images'"):
        shapes3d.load(tmp_path / "keys.h5")
    with h5py.File(tmp_path / "shape.h5", "w") as f:
        f["images"] = np.zeros((2, 64, 64), np.uint8)
        f["labels"] = np.zeros((2, 6))
    with pytest.raises(ValueError, match=r"\(N, 64, 64, 3\)"):
        shapes3d.load(tmp_path / "shape.h5")


def test_primitives_intersect_where_expected():
    from fqvae.data.generators import raycast

    origin = np.array([0.0, 0.4, 5.0])
    toward = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    t, n = raycast.box(origin, toward, 0.5)
    assert np.allclose(t[0], 4.5) and n[0].tolist() == [0, 0, 1] and np.isinf(t[1])
    t, n = raycast.cylinder(origin, toward, 0.5, 1.0)
    assert np.allclose(t[0], 4.5) and np.allclose(n[0], [0, 0, 1])
    t, n = raycast.sphere(origin, toward, np.array([0.0, 0.4, 0.0]), 0.5)
    assert np.allclose(t[0], 4.5) and np.allclose(n[0], [0, 0, 1])
    t, _ = raycast.capsule(origin, toward, 0.3, 1.2)
    assert np.allclose(t[0], 4.7)
    above = np.array([0.0, 3.0, 0.0])
    down = np.array([[0.0, -1.0, 0.0]])
    assert np.allclose(raycast.capsule(above, down, 0.3, 1.2)[0], 1.8)
    assert np.allclose(raycast.cylinder(above, down, 0.5, 1.0)[1], [[0, 1, 0]])

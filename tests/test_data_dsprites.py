"""Procedural dSprites replica: calibration against real sprites, layout, factors, loader."""

from pathlib import Path

import numpy as np
import pytest

from fqvae.data import dsprites
from fqvae.data.generators.dsprites import render_sprites
from fqvae.data.tables import DSPRITES

REFERENCE = Path("/work/shared/data/reference/dsprites_real_12.npz")
# Shared reference samples (spec §10); the calibration test needs them.
needs_reference = pytest.mark.skipif(not REFERENCE.is_file(), reason="reference samples absent")
# A small grid keeps the tests fast: 3 x 2 x 3 x 3 x 3 = 162 images.
GRID = {"scale": (0, 5), "orientation": (0, 4, 39), "posX": (0, 13, 31), "posY": (0, 4, 31)}


@pytest.fixture(scope="module")
def replica_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dsprites") / "dsprites_ci.npz"
    dsprites.make(path, keep=GRID, seed=3)
    return path


def _values(shape, scale, orientation, x=0.5, y=0.5):
    return np.array([[1.0, shape, scale, orientation, x, y]])


@needs_reference
def test_replica_matches_the_real_reference_sprites():
    ref = np.load(REFERENCE)
    rendered = render_sprites(ref["latents_values"])
    real = ref["imgs"].astype(bool)
    ours = rendered.astype(bool)
    iou = (real & ours).sum(axis=(1, 2)) / (real | ours).sum(axis=(1, 2))
    assert iou.min() >= 0.9, iou


def test_npz_layout_matches_the_real_file(replica_file):
    with np.load(replica_file, allow_pickle=True, encoding="latin1") as npz:
        assert set(npz.files) == {"imgs", "latents_values", "latents_classes", "metadata"}
        imgs, values, classes = npz["imgs"], npz["latents_values"], npz["latents_classes"]
        metadata = npz["metadata"].item()
    n = 162
    assert imgs.shape == (n, 64, 64) and imgs.dtype == np.uint8
    assert set(np.unique(imgs)) == {0, 1}
    assert values.shape == (n, 6) and values.dtype == np.float64
    assert classes.shape == (n, 6) and classes.dtype == np.int64
    assert metadata["data_source"] == "procedural" and metadata["seed"] == 3
    # Values come from the real grid; classes are the real-grid classes of the kept grid points.
    table, original = dsprites.grid(GRID)
    assert np.array_equal(classes, original)
    assert np.array_equal(values, DSPRITES.values_of(original))
    assert np.allclose(values[1, 5], 4 / 31) and np.allclose(values[9, 3], 8 * np.pi / 39)


def test_loader_reads_the_replica(replica_file):
    ds = dsprites.load(replica_file, allow_reduced=True)
    assert ds.factor_names == ["color", "shape", "scale", "orientation", "posX", "posY"]
    assert ds.factor_sizes == [1, 3, 2, 3, 3, 3]
    assert ds.latent_factor_indices == [1, 2, 3, 4, 5]
    assert ds.observation_factor_indices == [0]
    assert ds.observation_shape == (64, 64, 1) and ds.num_channels == 1 and ds.max_value == 1
    assert ds.data_source == "procedural"
    assert np.array_equal(ds.images, dsprites.generate(GRID).images)
    i = 77
    assert np.array_equal(ds.values[i], DSPRITES.values_of(dsprites.grid(GRID)[1])[i])
    with pytest.raises(ValueError, match="allow_reduced"):
        dsprites.load(replica_file)


def test_ci_grid_is_the_spec_reduction():
    table, original = dsprites.grid(dsprites.CI_GRID)
    assert table.sizes == (1, 3, 6, 10, 8, 8)
    assert table.values[3].tolist() == DSPRITES.values[3][::4].tolist()
    assert original[-1].tolist() == [0, 2, 5, 36, 28, 28]


def test_make_is_deterministic(tmp_path, replica_file):
    again = tmp_path / "again.npz"
    dsprites.make(again, keep=GRID, seed=3)
    with np.load(again) as a, np.load(replica_file) as b:
        assert np.array_equal(a["imgs"], b["imgs"])
        assert np.array_equal(a["latents_values"], b["latents_values"])


def test_orientation_zero_and_two_pi_render_identically():
    table = DSPRITES
    a = table.values_of(np.array([[0, s, 3, 0, 10, 20] for s in range(3)]))
    b = table.values_of(np.array([[0, s, 3, 39, 10, 20] for s in range(3)]))
    assert np.array_equal(render_sprites(a), render_sprites(b))


def test_symmetric_shapes_repeat():
    quarter = render_sprites(_values(1, 1.0, np.pi / 2 + 0.3))
    assert np.array_equal(render_sprites(_values(1, 1.0, 0.3)), quarter)
    half = render_sprites(_values(2, 1.0, np.pi + 0.3))
    assert np.array_equal(render_sprites(_values(2, 1.0, 0.3)), half)
    assert not np.array_equal(
        render_sprites(_values(3, 1.0, 0.0)), render_sprites(_values(3, 1.0, np.pi))
    )


@pytest.mark.parametrize("shape", [1, 2, 3])
def test_area_grows_as_scale_squared(shape):
    scales = np.linspace(0.5, 1.0, 6)
    areas = np.array([render_sprites(_values(shape, s, 0.4)).sum() for s in scales])
    ratio = areas / scales**2
    assert ratio.max() / ratio.min() < 1.15


@pytest.mark.parametrize("shape", [1, 2])
def test_centroid_within_one_pixel_of_the_centre(shape):
    for x, y, theta in [(0.0, 0.0, 0.0), (1.0, 0.3, 1.0), (0.42, 1.0, 2.5)]:
        img = render_sprites(_values(shape, 0.8, theta, x, y))[0]
        rows, cols = np.nonzero(img)
        assert abs(cols.mean() + 0.5 - (16 + 32 * x)) < 1
        assert abs(rows.mean() + 0.5 - (16 + 32 * y)) < 1


def test_heart_has_lobes_up_and_tip_down():
    img = render_sprites(_values(3, 1.0, 0.0))[0]
    rows = np.nonzero(img.any(axis=1))[0]
    top, bottom = img[rows[0] + 1], img[rows[-1]]
    assert np.count_nonzero(np.diff(top.astype(int)) == 1) == 2  # two lobes
    assert bottom.sum() <= 2  # the tip


def test_y_points_down_and_x_points_right():
    img = render_sprites(_values(1, 0.5, 0.0, x=0.0, y=1.0))[0]
    rows, cols = np.nonzero(img)
    assert cols.mean() < 20 and rows.mean() > 44


def test_render_rejects_unknown_shapes():
    with pytest.raises(ValueError, match="shape"):
        render_sprites(_values(4, 1.0, 0.0))


def test_corrupt_npz_raises_value_error(tmp_path, replica_file):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(replica_file.read_bytes()[: replica_file.stat().st_size // 2])
    with pytest.raises(ValueError, match="imgs"):
        dsprites.load(truncated)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, images=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="missing key"):
        dsprites.load(wrong)
    shapes = tmp_path / "shapes.npz"
    np.savez(
        shapes,
        imgs=np.zeros((2, 32, 32), np.uint8),
        latents_values=np.zeros((2, 6)),
        latents_classes=np.zeros((2, 6), int),
    )
    with pytest.raises(ValueError, match=r"\(N, 64, 64\)"):
        dsprites.load(shapes)

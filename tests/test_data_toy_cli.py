"""The toy set and the ``fqvae data`` command line."""

import h5py
import numpy as np
import pytest
from PIL import Image

from fqvae import data
from fqvae.cli import main
from fqvae.data import dsprites, toyset
from fqvae.data.toyset import TOY


def test_toy_grid_and_images():
    ds = data.toy()
    assert ds.factor_names == ["x", "y", "size", "hue"]
    assert ds.factor_sizes == [8, 8, 4, 8] and len(ds) == 2048
    assert ds.images.shape == (2048, 64, 64, 3) and ds.images.dtype == np.uint8
    assert ds.data_source == "procedural"
    i = ds.index_of(np.array([[2, 5, 1, 0]]))[0]
    image = ds.get_uint8(i)
    rows, cols = np.nonzero(image.any(axis=-1))
    assert (cols.min(), cols.max() + 1) == (23 - 6, 23 + 6)  # x = 11 + 6*2, side 12
    assert (rows.min(), rows.max() + 1) == (41 - 6, 41 + 6)
    assert image[rows[0], cols[0]].tolist() == [255, 0, 0]
    assert all(len(np.unique(ds.images[:, :, :, c])) > 1 for c in range(3))


def test_toy_each_factor_changes_the_image():
    ds = data.toy()
    base = np.array([3, 4, 1, 2])
    image = ds.get_uint8(ds.index_of(base[None]))[0]
    for f, size in enumerate(TOY.sizes):
        for c in range(size):
            other = base.copy()
            other[f] = c
            same = np.array_equal(image, ds.get_uint8(ds.index_of(other[None]))[0])
            assert same == (c == base[f]), (f, c)


def test_cli_make_toy_writes_the_h5_layout(tmp_path, capsys):
    out = tmp_path / "toy.h5"
    assert main(["data", "make", "toy", "--out", str(out), "--reduced"]) == 0
    assert "wrote" in capsys.readouterr().out
    with h5py.File(out, "r") as f:
        assert f["images"].shape == (54, 64, 64, 3) and f["labels"].shape == (54, 4)
    loaded = data.load("toy", out, allow_reduced=True)
    expected = data.toy(keep=toyset.CI_GRID)
    assert np.array_equal(loaded.images, expected.images)
    assert np.array_equal(loaded.values, expected.values)


def test_cli_show_writes_a_traversal_png(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["data", "show", "toy", "--out", str(out), "--base", "1,2,3,4"]) == 0
    with Image.open(out) as im:
        assert im.size == (96 + 10 * 66, 4 * 66)
        grid = np.asarray(im.convert("RGB"))
    first_row = [grid[:64, 96 + c * 66 : 96 + c * 66 + 64] for c in range(8)]
    assert all(not np.array_equal(a, b) for a, b in zip(first_row, first_row[1:]))


def test_cli_show_reads_a_file(tmp_path):
    dsprites.make(tmp_path / "d.npz", keep={"orientation": [0, 9], "posX": [3], "posY": [5, 6]})
    out = tmp_path / "d.png"
    assert (
        main(
            [
                "data",
                "show",
                "dsprites",
                "--path",
                str(tmp_path / "d.npz"),
                "--allow-reduced",
                "--out",
                str(out),
                "--cols",
                "4",
            ]
        )
        == 0
    )
    with Image.open(out) as im:
        assert im.size == (96 + 4 * 66, 4 * 66)


def test_cli_reports_errors_with_exit_code(tmp_path, capsys):
    assert main(["data", "show", "shapes3d", "--path", str(tmp_path / "missing.h5")]) == 2
    err = capsys.readouterr().err
    assert "missing.h5" in err and "fqvae data make shapes3d" in err
    assert main(["data", "show", "toy", "--base", "9,0,0,0", "--out", str(tmp_path / "x.png")]) == 2
    with pytest.raises(SystemExit):
        main(["data", "make", "mpi3d", "--out", str(tmp_path / "x.npz")])

"""Loaders on layout stubs, path lookup, caches, bad input and interrupted writes."""

import json

import h5py
import numpy as np
import pytest
from PIL import Image

from fqvae import data
from fqvae.data import cache, registry, shapes3d
from fqvae.data.stubs import pattern

MPI3D_SMALL = (2, 2, 1, 1, 2, 3, 2)
ISAAC3D_SMALL = (2, 1, 1, 2, 1, 1, 2, 1, 2)
FALCOR3D_SMALL = (2, 1, 2, 1, 1, 2, 1)


def _each_factor_changes_pixels(ds):
    base = np.zeros(ds.num_factors, dtype=np.int64)
    image = ds.get_uint8(ds.index_of(base[None]))[0]
    assert np.array_equal(image, ds.get_uint8(ds.index_of(base[None]))[0])
    for f, size in enumerate(ds.factor_sizes):
        if size > 1:
            changed = base.copy()
            changed[f] = size - 1
            assert not np.array_equal(image, ds.get_uint8(ds.index_of(changed[None]))[0]), f


def _check_bookkeeping(ds):
    idx = np.arange(len(ds))
    assert np.array_equal(ds.factors_to_index(ds.index_to_factors(idx)), idx)
    rng = np.random.RandomState(0)
    factors = ds.sample_factors(9, rng)
    assert factors.shape == (9, len(ds.latent_factor_indices)) and factors.dtype == np.int64
    assert (factors < np.array(ds.factor_sizes)[ds.latent_factor_indices]).all()
    images = ds.sample_observations_from_factors(factors, rng)
    assert images.shape == (9, *ds.observation_shape) and images.dtype == np.uint8


def test_mpi3d_stub_loads(tmp_path):
    path = data.write_layout_stub("mpi3d", tmp_path, MPI3D_SMALL)
    assert path.name == "real3d_complicated_shapes_ordered.npz"
    with np.load(path) as npz:
        assert npz.files == ["images"]
    ds = data.load("mpi3d", tmp_path, factor_sizes=MPI3D_SMALL, allow_reduced=True)
    assert len(ds) == 48 and ds.observation_shape == (64, 64, 3)
    assert ds.factor_names[0] == "object_color" and ds.factor_names[-1] == "vertical_axis"
    assert ds.factor_values[5].tolist() == [0.0, 1.0, 2.0]
    _check_bookkeeping(ds)
    _each_factor_changes_pixels(ds)
    classes = ds.index_to_factors(np.arange(len(ds)))
    assert np.array_equal(ds.images, pattern(classes, MPI3D_SMALL, 64))


def test_mpi3d_sizes_and_variants_are_checked(tmp_path):
    data.write_layout_stub("mpi3d", tmp_path, MPI3D_SMALL)
    with pytest.raises(ValueError, match="allow_reduced"):
        data.load("mpi3d", tmp_path, factor_sizes=MPI3D_SMALL)
    with pytest.raises(ValueError, match=r"\(48, 64, 64, 3\)"):
        data.load("mpi3d", tmp_path, factor_sizes=(2, 2, 1, 1, 2, 3, 1), allow_reduced=True)
    with pytest.raises(ValueError, match="known"):
        data.load("mpi3d", tmp_path, variant="huge")
    stub = data.write_layout_stub("mpi3d", tmp_path, (1, 1, 1, 1, 1, 2, 2), variant="real")
    assert stub.name == "mpi3d_real.npz"
    ds = data.load(
        "mpi3d", tmp_path, variant="real", factor_sizes=(1, 1, 1, 1, 1, 2, 2), allow_reduced=True
    )
    assert len(ds) == 4


@pytest.mark.parametrize(
    "name,sizes,labels_file",
    [
        ("isaac3d", ISAAC3D_SMALL, "labels.npy"),
        ("falcor3d", FALCOR3D_SMALL, "train-rec.labels"),
    ],
)
def test_folder_stub_loads_with_resize_and_label_check(tmp_path, name, sizes, labels_file):
    folder = data.write_layout_stub(name, tmp_path, sizes)
    n = int(np.prod(sizes))
    assert sorted(p.name for p in (folder / "images").iterdir()) == [
        f"{i:06d}.png" for i in range(n)
    ]
    with Image.open(folder / "images" / "000000.png") as im:
        assert im.size == (128, 128) and im.mode == "RGB"
    assert (folder / labels_file).is_file()
    ds = data.load(name, tmp_path, factor_sizes=sizes, allow_reduced=True)
    assert len(ds) == n and ds.images.shape == (n, 64, 64, 3) and ds.images.dtype == np.uint8
    with Image.open(folder / "images" / f"{n - 1:06d}.png") as im:
        expected = np.asarray(im.convert("RGB").resize((64, 64), Image.Resampling.BICUBIC))
    assert np.array_equal(ds.images[-1], expected)
    assert ds.factor_values[0].tolist() == [0.0, 1.0]
    _check_bookkeeping(ds)
    _each_factor_changes_pixels(ds)


def test_folder_label_mismatch_warns(tmp_path):
    folder = data.write_layout_stub("isaac3d", tmp_path, ISAAC3D_SMALL)
    labels = np.load(folder / "labels.npy")
    np.save(folder / "labels.npy", labels[::-1])
    with pytest.warns(UserWarning, match="do not match their file id"):
        data.load("isaac3d", folder, factor_sizes=ISAAC3D_SMALL, allow_reduced=True)


def test_folder_missing_image_is_reported(tmp_path):
    folder = data.write_layout_stub("falcor3d", tmp_path, FALCOR3D_SMALL)
    (folder / "images" / "000003.png").unlink()
    with pytest.raises(ValueError, match="000003.png"):
        data.load("falcor3d", tmp_path, factor_sizes=FALCOR3D_SMALL, allow_reduced=True)


def test_folder_reduced_sizes_need_allow_reduced(tmp_path):
    data.write_layout_stub("falcor3d", tmp_path, FALCOR3D_SMALL)
    with pytest.raises(ValueError, match="allow_reduced"):
        data.load("falcor3d", tmp_path, factor_sizes=FALCOR3D_SMALL)


def test_prepare_writes_a_memory_mapped_cache(tmp_path):
    data.write_layout_stub("isaac3d", tmp_path / "src", ISAAC3D_SMALL)
    out = data.prepare(
        "isaac3d",
        tmp_path / "src",
        tmp_path / "cache",
        factor_sizes=ISAAC3D_SMALL,
        allow_reduced=True,
    )
    assert sorted(p.name for p in out.iterdir()) == ["factors.npy", "images.npy", "meta.json"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["factor_sizes"] == list(ISAAC3D_SMALL) and "BICUBIC" in meta["resize"]
    assert meta["source_bytes"]["labels.npy"] > 0
    cached = data.load("isaac3d", out)
    assert isinstance(cached.images, np.memmap)
    direct = data.load("isaac3d", tmp_path / "src", factor_sizes=ISAAC3D_SMALL, allow_reduced=True)
    assert np.array_equal(np.asarray(cached.images), direct.images)
    assert np.array_equal(np.load(out / "factors.npy"), direct.classes)
    with pytest.raises(ValueError, match="holds 'isaac3d'"):
        data.load("falcor3d", out)


def test_prepare_generated_dataset_and_root_lookup(tmp_path, monkeypatch):
    data.make("toy", tmp_path / "toy.h5", reduced=True)
    data.prepare("toy", tmp_path / "toy.h5", tmp_path / "toy", allow_reduced=True)
    monkeypatch.setenv("FQVAE_DATA_ROOT", str(tmp_path))
    ds = data.load("toy")  # <root>/toy/meta.json wins over <root>/toy.h5
    assert isinstance(ds.images, np.memmap)
    assert np.array_equal(np.asarray(ds.images), data.toy(keep=registry._GRIDS["toy"]).images)


def test_incomplete_cache_is_rejected(tmp_path):
    data.make("toy", tmp_path / "toy.h5", reduced=True)
    out = data.prepare("toy", tmp_path / "toy.h5", tmp_path / "cache", allow_reduced=True)
    np.save(out / "factors.npy", np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="factors.npy"):
        cache.load_cache(out)
    (out / "meta.json").unlink()
    with pytest.raises(FileNotFoundError):
        cache.load_cache(out)


def test_env_root_lookup(tmp_path, monkeypatch):
    data.make("shapes3d", tmp_path / "3dshapes.h5", reduced=True)
    monkeypatch.setenv("FQVAE_DATA_ROOT", str(tmp_path))
    ds = data.load("shapes3d", allow_reduced=True)
    assert len(ds) == 192
    assert len(data.load("shapes3d", tmp_path / "3dshapes.h5", allow_reduced=True)) == 192


def test_missing_file_names_the_path_and_the_make_command(tmp_path, monkeypatch):
    monkeypatch.delenv("FQVAE_DATA_ROOT", raising=False)
    with pytest.raises(FileNotFoundError, match="fqvae data make shapes3d --out") as err:
        data.load("shapes3d", tmp_path)
    assert str(tmp_path / "3dshapes.h5") in str(err.value)
    with pytest.raises(FileNotFoundError, match="FQVAE_DATA_ROOT"):
        data.load("dsprites")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.npz")):
        data.load("dsprites", tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="no procedural replica"):
        data.load("isaac3d", tmp_path)


def test_toy_loads_in_memory_without_a_root(monkeypatch):
    monkeypatch.delenv("FQVAE_DATA_ROOT", raising=False)
    assert len(data.load("toy")) == 2048
    assert len(data.load("toy", keep={"hue": [1]})) == 256
    with pytest.raises(ValueError, match="not both"):
        data.make("toy", "unused.h5", reduced=True, keep={"hue": [1]})


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="dsprites, shapes3d, mpi3d, isaac3d, falcor3d, toy"):
        data.load("cars3d")
    with pytest.raises(ValueError, match="no procedural generator"):
        data.make("mpi3d", "x.npz")


def test_interrupted_make_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "3dshapes.h5"
    blocks = shapes3d.Renderer.blocks

    def interrupted(self):
        for i, block in enumerate(blocks(self)):
            if i == 2:
                raise KeyboardInterrupt
            yield block

    monkeypatch.setattr(shapes3d.Renderer, "blocks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.make("shapes3d", target, reduced=True)
    assert list(tmp_path.iterdir()) == []


def test_make_replaces_an_existing_file_only_when_complete(tmp_path, monkeypatch):
    target = tmp_path / "toy.h5"
    data.make("toy", target, reduced=True)
    before = target.read_bytes()

    def failing(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5py.File, "create_dataset", failing)
    with pytest.raises(RuntimeError):
        data.make("toy", target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["toy.h5"]


def test_prepared_dsprites_cache_keeps_the_protocol(tmp_path):
    from fqvae.data import dsprites

    keep = {"scale": [0], "orientation": [0, 20], "posX": [0, 31], "posY": [7]}
    dsprites.make(tmp_path / "d.npz", keep=keep)
    data.prepare("dsprites", tmp_path / "d.npz", tmp_path / "cache", allow_reduced=True)
    cached = data.load("dsprites", tmp_path / "cache")
    direct = dsprites.load(tmp_path / "d.npz", allow_reduced=True)
    assert cached.max_value == 1 and cached.observation_shape == (64, 64, 1)
    assert cached.latent_factor_indices == [1, 2, 3, 4, 5]
    assert cached.data_source == "procedural"
    assert np.array_equal(np.asarray(cached.images), direct.images)
    assert all(np.array_equal(a, b) for a, b in zip(cached.factor_values, direct.factor_values))

"""Factor bookkeeping, the metric sampling protocol, splits and batch conversion."""

import numpy as np
import pytest
import torch

from fqvae import data
from fqvae.data.dataset import split_indices
from fqvae.data.factors import FactorTable, encode_labels, table_from_labels
from fqvae.data.tables import DSPRITES, SHAPES3D, mpi3d_table
from fqvae.data.toyset import TOY

SPEC_BASES = {
    "dsprites": (DSPRITES, [737280, 245760, 40960, 1024, 32, 1], 737280),
    "shapes3d": (SHAPES3D, [48000, 4800, 480, 60, 15, 1], 480000),
    "mpi3d": (
        mpi3d_table((4, 4, 2, 3, 3, 40, 40)),
        [115200, 28800, 14400, 4800, 1600, 40, 1],
        460800,
    ),
}


@pytest.mark.parametrize("name", sorted(SPEC_BASES))
def test_bases_and_sizes_match_the_spec(name):
    table, bases, n = SPEC_BASES[name]
    assert table.bases.tolist() == bases
    assert table.num_images == n


def test_folder_dataset_bases_match_the_spec():
    from fqvae.data.folders import LAYOUTS

    isaac = FactorTable(
        LAYOUTS["isaac3d"].names,
        LAYOUTS["isaac3d"].sizes,
        tuple(np.arange(s, dtype=float) for s in LAYOUTS["isaac3d"].sizes),
    )
    falcor = FactorTable(
        LAYOUTS["falcor3d"].names,
        LAYOUTS["falcor3d"].sizes,
        tuple(np.arange(s, dtype=float) for s in LAYOUTS["falcor3d"].sizes),
    )
    assert isaac.bases.tolist() == [245760, 30720, 6144, 1536, 384, 96, 16, 4, 1]
    assert isaac.num_images == 737280
    assert falcor.bases.tolist() == [46656, 7776, 1296, 216, 36, 6, 1]
    assert falcor.num_images == 233280


@pytest.mark.parametrize(
    "table",
    [DSPRITES, SHAPES3D, TOY, SPEC_BASES["mpi3d"][0]],
    ids=["dsprites", "shapes3d", "toy", "mpi3d"],
)
def test_index_round_trip_on_random_indices(table):
    rng = np.random.RandomState(0)
    idx = rng.randint(table.num_images, size=500)
    classes = table.classes_of(idx)
    assert classes.dtype == np.int64 and classes.shape == (500, table.num_factors)
    assert np.array_equal(table.index_of(classes), idx)
    assert np.array_equal(idx, (classes * table.bases).sum(axis=1))
    assert table.classes_of(table.num_images - 1)[0].tolist() == [s - 1 for s in table.sizes]


def test_last_factor_varies_fastest():
    classes = SHAPES3D.classes_of(np.arange(16))
    assert classes[:15, 5].tolist() == list(range(15))
    assert classes[15].tolist() == [0, 0, 0, 0, 1, 0]


def test_index_of_rejects_out_of_range_and_bad_shapes():
    with pytest.raises(ValueError):
        SHAPES3D.index_of(np.array([[10, 0, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        SHAPES3D.index_of(np.zeros((3, 5), dtype=int))


def test_subset_keeps_real_values():
    table, kept = SHAPES3D.subset({"orientation": [0, 14], "scale": [7]})
    assert table.sizes == (10, 10, 10, 1, 4, 2)
    assert table.values[5].tolist() == [-30.0, 30.0]
    assert table.values[3].tolist() == [1.25]
    assert kept[5].tolist() == [0, 14]
    with pytest.raises(ValueError, match="unknown factor"):
        SHAPES3D.subset({"colour": [0]})
    with pytest.raises(ValueError, match="subset"):
        SHAPES3D.subset({"shape": [4]})


def test_sample_factors_follows_the_dlib_draw_order():
    ds = data.toy()
    latents = ds.sample_factors(7, np.random.RandomState(5))
    rng = np.random.RandomState(5)
    expected = np.stack([rng.randint(s, size=7) for s in ds.factor_sizes], axis=1)
    assert latents.dtype == np.int64
    assert np.array_equal(latents, expected)


def test_observation_only_factors_consume_draws_in_sample_observations():
    table = FactorTable(
        ("obs", "a", "b"),
        (3, 4, 5),
        (np.arange(3.0), np.arange(4.0), np.arange(5.0)),
        latent=(1, 2),
    )
    images = np.arange(60, dtype=np.uint8).reshape(60, 1, 1, 1)
    ds = data.GroundTruthDataset("t", images, table)
    rng = np.random.RandomState(0)
    latents = ds.sample_factors(6, rng)
    obs = ds.sample_observations_from_factors(latents, rng)
    ref = np.random.RandomState(0)
    a, b = ref.randint(4, size=6), ref.randint(5, size=6)
    o = ref.randint(3, size=6)
    assert np.array_equal(latents, np.stack([a, b], axis=1))
    assert np.array_equal(obs[:, 0, 0, 0], o * 20 + a * 5 + b)
    assert rng.randint(1000) == ref.randint(1000)


def test_dsprites_colour_draw_consumes_nothing():
    rng, ref = np.random.RandomState(3), np.random.RandomState(3)
    DSPRITES.complete(DSPRITES.sample_latent(4, rng), rng)
    for size in DSPRITES.sizes[1:]:
        ref.randint(size, size=4)
    assert rng.randint(10**6) == ref.randint(10**6)


@pytest.mark.parametrize("n", [1000, 11, 480])
def test_split_matches_random_split(n):
    mine = split_indices(n, seed=1)
    theirs = torch.utils.data.random_split(
        range(n), [0.8, 0.1, 0.1], generator=torch.Generator().manual_seed(1)
    )
    for a, b in zip(mine, theirs):
        assert a.tolist() == list(b.indices)
    assert sorted(np.concatenate(mine).tolist()) == list(range(n))


def test_split_sizes_from_the_spec():
    from fqvae.data.dataset import split_lengths

    assert split_lengths(480000) == [384000, 48000, 48000]
    assert split_lengths(460800) == [368640, 46080, 46080]
    assert split_lengths(737280) == [589824, 73728, 73728]


def test_batch_converts_on_device_to_chw_float():
    ds = data.toy(keep={"x": [0, 7], "y": [3], "size": [3], "hue": [0, 4]})
    idx = np.array([3, 0])
    centered = ds.batch(idx, "cpu")
    unit = ds.batch(idx, torch.device("cpu"), pixels="unit")
    assert centered.dtype == torch.float32 and centered.shape == (2, 3, 64, 64)
    expected = torch.from_numpy(ds.images[idx]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(unit, expected)
    assert torch.allclose(centered, expected - 0.5)
    assert centered.min() == -0.5 and centered.max() == 0.5
    with pytest.raises(ValueError, match="pixels"):
        ds.batch(idx, "cpu", pixels="signed")
    # the trainer's loader thread gathers uint8 on the host; the training thread converts
    host = ds.gather(idx)
    assert host.dtype == torch.uint8 and host.shape == (2, 64, 64, 3)
    assert torch.equal(ds.to_pixels(host, "cpu", "unit"), unit)
    assert torch.equal(ds.to_pixels(host, "cpu"), centered)


def test_torch_view_is_a_dataset():
    ds = data.toy(keep={"x": [0, 1], "y": [0], "size": [1], "hue": [2, 3]})
    train, _, _ = ds.split()
    view = ds.torch_view(train)
    loader = torch.utils.data.DataLoader(view, batch_size=2)
    x, y = next(iter(loader))
    assert x.shape == (2, 3, 64, 64) and y.shape == (2, 4) and y.dtype == torch.int64
    assert torch.equal(x[0], ds.batch([train[0]])[0])
    assert y[0].tolist() == ds.index_to_factors(train[0])[0].tolist()


def test_table_from_labels_checks_order_and_sizes():
    table, _ = SHAPES3D.subset(
        {
            "floor_hue": [1, 2],
            "wall_hue": [0],
            "object_hue": [0],
            "scale": [0, 1],
            "shape": [0],
            "orientation": [0, 1, 2],
        }
    )
    labels = table.values_of(table.all_classes())
    loaded = table_from_labels(labels, labels, SHAPES3D.names, table.sizes)
    assert loaded.sizes == table.sizes
    assert all(np.array_equal(a, b) for a, b in zip(loaded.values, table.values))
    with pytest.raises(ValueError, match="allow_reduced"):
        table_from_labels(labels, labels, SHAPES3D.names, SHAPES3D.sizes)
    with pytest.raises(ValueError, match="mixed-radix order"):
        table_from_labels(labels[::-1], labels[::-1], SHAPES3D.names, table.sizes)


def test_encode_labels_ranks_values():
    classes, uniques = encode_labels(np.array([[0.5, 3.0], [0.1, 3.0], [0.5, 1.0]]))
    assert classes.tolist() == [[1, 1], [0, 1], [1, 0]]
    assert uniques[0].tolist() == [0.1, 0.5]

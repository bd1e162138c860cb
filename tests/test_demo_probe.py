"""studies/demo_probe.py: the settings it parses are the ones the demo's runs get."""

import argparse

import pytest
from study_scripts import load_script

from fqvae.training.config import ConfigError
from fqvae.training.demo import GRID, demo_config, demo_data


@pytest.fixture(scope="module")
def probe():
    return load_script("demo_probe")


def test_seed_ranges_expand_in_order(probe):
    assert probe.seed_list("101-103,7") == [101, 102, 103, 7]


def test_settings_reach_the_demo_config(probe):
    cfg = demo_config("factorqvae", progress=False)
    for item in ("train.lr=3e-3", "model.hparams.gamma=0.003"):
        probe.override(cfg, item)
    assert cfg.train.lr == 3e-3 and cfg.model.hparams["gamma"] == 0.003
    assert cfg.model.hparams["kl_weight"] == 0.0  # the demo's own change stays


def test_bad_settings_are_refused(probe):
    cfg = demo_config("ae", progress=False)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        probe.override(cfg, "train.lr")
    with pytest.raises(ConfigError, match="train.lr"):
        probe.override(cfg, "train.lr=fast")
    with pytest.raises(ConfigError, match="unknown config key"):
        probe.override(cfg, "train.bogus=1")
    with pytest.raises(ConfigError, match=r"no hparams \['gamma'\]"):  # the AE has no TC term
        probe.override(cfg, "model.hparams.gamma=0.003")
    with pytest.raises(ConfigError, match="--steps"):  # set after the schedules were resolved
        probe.override(cfg, "train.iterations=3000")


def test_best_nmi_is_per_factor(probe):
    nmi = [[0.1, 0.9, 0.2], [0.5, 0.05, 0.3]]  # factors x latents
    assert probe.best_nmi({"infomec.nmi": nmi}) == [0.9, 0.5]


def test_grid_items_parse_and_reach_the_data(probe):
    assert probe.grid_item("scale=0-2") == ("scale", [0, 1, 2])
    assert probe.grid_item("shape=0,3") == ("shape", [0, 3])
    for bad in ("scale", "scale=", "scale=a-b"):
        with pytest.raises(argparse.ArgumentTypeError):
            probe.grid_item(bad)
    grid = {**GRID, **dict([probe.grid_item("floor_hue=0"), probe.grid_item("scale=0-1")])}
    data = demo_data(grid)
    assert data.factor_sizes == [1, 10, 10, 2, 1, 5]
    assert [data.factor_names[i] for i in data.latent_factor_indices] == [
        "wall_hue", "object_hue", "scale", "orientation"
    ]  # fmt: skip

"""Config parsing, logs (CSV always, TensorBoard when installed) and the PNG figures."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from test_train_tiny import SIDE, TinyModel, single_thread, tiny_dataset  # noqa: F401

from fqvae.training import visualize
from fqvae.training.checks import check_resume
from fqvae.training.config import Config, ConfigError, flatten, get_key, set_key
from fqvae.training.logs import Logger


def test_set_key_parses_and_checks_types():
    cfg = Config()
    set_key(cfg, "train.lr", "3e-4")
    set_key(cfg, "train.iterations", "1000")
    set_key(cfg, "system.channels_last", "true")
    set_key(cfg, "system.amp", "off")
    set_key(cfg, "data.path", "null")
    set_key(cfg, "eval.metrics", "dci,mig")
    set_key(cfg, "model.hparams.gamma", "1e-3")
    assert (cfg.train.lr, cfg.train.iterations, cfg.system.channels_last) == (3e-4, 1000, True)
    assert (cfg.system.amp, cfg.data.path, cfg.eval.metrics) == ("off", None, ["dci", "mig"])
    assert get_key(cfg, "model.hparams.gamma") == 1e-3
    with pytest.raises(ConfigError, match="unknown config key 'train.nope'"):
        set_key(cfg, "train.nope", "1")
    with pytest.raises(ConfigError, match="is a section"):
        set_key(cfg, "train", "1")
    with pytest.raises(ConfigError, match="train.iterations must be int"):
        set_key(cfg, "train.iterations", "1.5")


def test_config_round_trips_through_a_dict():
    cfg = Config()
    set_key(cfg, "model.hparams.kl_weight", "0.1")
    cfg.train.batch = 64
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown config key"):
        Config.from_dict({**cfg.to_dict(), "extra": 1})
    assert "model.hparams" in flatten(cfg.to_dict())


def test_resume_may_change_runtime_keys_only():
    old = Config()
    new = Config.from_dict(old.to_dict())
    new.train.iterations, new.system.device, new.eval.every = 10, "cpu", 5
    check_resume(new, old)
    new.model.hparams["gamma"] = 1.0
    with pytest.raises(ConfigError, match="model.hparams"):
        check_resume(new, old)


def test_csv_log_without_tensorboard(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        log = Logger(tmp_path, tensorboard=True)
    log.scalars(1, {"loss": 1.0})
    log.scalars(2, {"loss": 0.5})
    log.close()
    assert not (tmp_path / "tb").exists()
    with open(tmp_path / "log.csv") as f:
        assert [r["loss"] for r in csv.DictReader(f)] == ["1.0", "0.5"]
    log = Logger(tmp_path, tensorboard=False, resume_step=1)
    log.scalars(2, {"loss": 0.25})
    with open(tmp_path / "log.csv") as f:
        assert [(r["step"], r["loss"]) for r in csv.DictReader(f)] == [("1", "1.0"), ("2", "0.25")]


def test_tensorboard_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    log = Logger(tmp_path, tensorboard=True)
    log.scalars(1, {"loss": 1.0})
    log.close()
    assert any((tmp_path / "tb").iterdir())


def test_traversal_grid_and_usage_histogram(tmp_path):
    torch.manual_seed(0)
    model = TinyModel()
    x = tiny_dataset().batch(np.arange(32), "cpu")
    paths = visualize.save_figures(model, x, tmp_path, steps=5, num_values=10)
    zoom = 64 // SIDE  # images smaller than 64 px are drawn enlarged, pixel by pixel
    latents, cols, cell = 4, 2 + 5, SIDE + 2
    image = np.asarray(Image.open(paths["traversals"]))
    width = (cols * cell + 2) * zoom
    grid, margin = image[::zoom, -width::zoom], image[:, :-width]
    assert grid.shape == (latents * cell + 2, cols * cell + 2, 3)
    first = visualize.to_uint8(x[:1], "centered")[0]
    assert np.array_equal(grid[2 : 2 + SIDE, 2 : 2 + SIDE], first)
    # each row's label ("z0" ... "z3") is drawn in the margin beside that row
    rows = np.array_split((margin < 128).any(axis=(1, 2)), latents)
    assert all(row.any() for row in rows)
    assert model.training  # restored
    usage = np.asarray(Image.open(paths["codebook_usage"]))
    assert usage.ndim == 3 and usage.shape[0] > latents * 30


def test_traversal_rows_are_named_by_the_factor_each_latent_holds():
    nmi = np.array([[0.05, 0.94, 0.30], [0.02, 0.10, 0.61]])  # (factors, latents)
    assert visualize.latent_labels(3, nmi, ["hue", "shape"]) == [
        "z0 -",
        "z1 hue 0.94",
        "z2 shape 0.61",
    ]
    assert visualize.latent_labels(2) == ["z0", "z1"]


def test_usage_counts_kinds():
    idx = np.array([[0, 1], [0, 3], [2, 3]])
    assert visualize.usage_counts(idx, True, num_values=5).tolist() == [
        [2, 0, 1, 0, 0],
        [0, 1, 0, 2, 0],
    ]
    values = np.array([[-0.5, 0.25], [0.5, 0.25]])
    assert visualize.usage_counts(values, True).tolist() == [[1, 1], [2, 0]]
    assert visualize.usage_counts(np.random.randn(100, 3), False).shape == (3, 20)


def test_periodic_and_final_evaluation(tmp_path):
    from test_train_tiny import tiny_config

    from fqvae.training.trainer import train

    torch.manual_seed(0)
    cfg = tiny_config(tmp_path, iterations=6)
    cfg.eval.every, cfg.eval.num_train, cfg.eval.num_test = 3, 48, 16
    cfg.eval.final_num_train, cfg.eval.final_num_test = 64, 32
    cfg.eval.metrics, cfg.eval.n_jobs, cfg.eval.images = ["dci", "mig"], 1, True
    result = train(cfg, dataset=tiny_dataset(), model=TinyModel())
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["step"] for e in report["periodic"]] == [3]
    assert report["step"] == 6 and report["final"]["num_train"] == 64
    assert result.metrics["dci.disentanglement"] == report["final"]["dci.disentanglement"]
    assert 0 <= report["final"]["recon.mse"] < 1
    with open(tmp_path / "eval.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["3"]
    assert (tmp_path / "traversals.png").exists()

"""Sampling codes from a dataset (dlib protocol), ``evaluate``, the FactorVAE score, and the
table / JSON / command-line helpers of ``fqvae eval``."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from sklearn.ensemble import GradientBoostingClassifier

from fqvae.cli.eval import register, run
from fqvae.metrics import dci, evaluate, factorvae_score, infomec, mig, sample_factor_code, sap
from fqvae.metrics.report import format_table, to_jsonable, write_json


class FactorData:
    """Test double of the dataset interface the metrics use (``fqvae.data``'s datasets): the
    "image" of a factor vector is the vector itself, as float32 (n, F, 1, 1).

    Latent factors are drawn one ``rng.randint(size, size=n)`` each, in order (spec §1). Pixels
    "unit" show classes + 1, "centered" classes + 0.5, so tests can tell which was asked for.
    """

    def __init__(self, factor_sizes=(5, 5, 5), latent_factor_indices=None):
        self.factor_sizes = list(factor_sizes)
        self.latent_factor_indices = (
            list(range(len(factor_sizes)))
            if latent_factor_indices is None
            else list(latent_factor_indices)
        )
        self.pixels_seen: set[str] = set()

    def sample_factors(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        sizes = [self.factor_sizes[f] for f in self.latent_factor_indices]
        return np.stack([rng.randint(s, size=n) for s in sizes], axis=1).astype(np.int64)

    def factors_to_index(self, classes: np.ndarray) -> np.ndarray:
        return np.ravel_multi_index(tuple(np.asarray(classes).T), self.factor_sizes)

    def batch(self, indices, device, pixels: str = "centered") -> torch.Tensor:
        self.pixels_seen.add(pixels)
        classes = np.stack(np.unravel_index(indices, self.factor_sizes), axis=1)
        shift = 1.0 if pixels == "unit" else 0.5
        return torch.tensor(classes + shift, dtype=torch.float32, device=device)[:, :, None, None]


class IdentityData(FactorData):
    """dlib's IdentityObservationsData: 10 factors on 1..10, drawn as one (n, 10) matrix."""

    def __init__(self):
        super().__init__((10,) * 10)

    def sample_factors(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        return rng.randint(1, 11, size=(n, 10)) - 1


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


MIX = torch.tensor([[1.0, 0.2, 0.0, 0.0], [0.0, 1.0, 0.3, 0.0], [0.1, 0.0, 1.0, 0.0]])


def mixed(x: torch.Tensor) -> torch.Tensor:
    """A partly entangled continuous code, with a dead fourth latent."""
    return x.flatten(1) @ MIX


def test_sample_factor_code_follows_dlib_protocol() -> None:
    """Per batch of 16: each latent factor in order, then each non-latent factor."""
    data = FactorData((3, 4, 2), latent_factor_indices=[1, 2])
    codes, factors = sample_factor_code(data, flat, 40, np.random.RandomState(7))
    rng = np.random.RandomState(7)
    want_codes, want_factors = [], []
    for m in (16, 16, 8):
        latent = np.stack([rng.randint(4, size=m), rng.randint(2, size=m)], axis=1)
        other = rng.randint(3, size=m)
        want_factors.append(latent)
        want_codes.append(np.c_[other, latent] + 1.0)
    np.testing.assert_array_equal(factors, np.concatenate(want_factors))
    np.testing.assert_array_equal(codes, np.concatenate(want_codes))
    assert codes.dtype == np.float32 and factors.dtype == np.int64
    assert data.pixels_seen == {"unit"}


def test_sample_factor_code_accepts_numpy_codes_and_checks_shapes() -> None:
    data = FactorData()
    codes, _ = sample_factor_code(
        data, lambda x: x.flatten(1).numpy() * 2, 5, np.random.RandomState(0)
    )
    assert codes.shape == (5, 3)
    with pytest.raises(
        ValueError, match=r"representation_fn must return shape \(batch, num_latents\)"
    ):
        sample_factor_code(data, lambda x: x.flatten(), 5, np.random.RandomState(0))
    with pytest.raises(ValueError, match="dataset has no attribute 'factor_sizes'"):
        sample_factor_code(object(), flat, 5, np.random.RandomState(0))
    with pytest.raises(ValueError, match="pixels must be one of"):
        sample_factor_code(data, flat, 5, np.random.RandomState(0), pixels="raw")
    with pytest.raises(ValueError, match="n must be a positive int"):
        sample_factor_code(data, flat, 0, np.random.RandomState(0))


def test_sampling_from_the_data_packages_dataset() -> None:
    """The real ``GroundTruthDataset`` with a single-class non-latent factor (as dSprites'
    colour): the sampled codes decode back to the sampled factors, in the dlib stream order."""
    from fqvae.data.dataset import GroundTruthDataset
    from fqvae.data.factors import FactorTable

    sizes = (1, 4, 3)
    classes = np.stack(np.meshgrid(*[np.arange(k) for k in sizes], indexing="ij"), -1)
    classes = classes.reshape(-1, 3)
    images = np.zeros((len(classes), 2, 2, 1), np.uint8)
    images[:, 0, 0, 0] = 10 * classes[:, 1]
    images[:, 0, 1, 0] = 10 * classes[:, 2]
    values = tuple(np.arange(k, dtype=float) for k in sizes)
    table = FactorTable(("color", "column", "level"), sizes, values, latent=(1, 2))
    data = GroundTruthDataset("tiny", images, table, data_source="procedural")

    codes, factors = sample_factor_code(
        data, lambda x: x.flatten(1)[:, :2] * 25.5, 40, np.random.RandomState(3)
    )
    rng = np.random.RandomState(3)
    want = [np.stack([rng.randint(4, size=m), rng.randint(3, size=m)], 1) for m in (16, 16, 8)]
    np.testing.assert_array_equal(factors, np.concatenate(want))
    np.testing.assert_allclose(codes, factors, atol=1e-5)


SMALL_GBT = GradientBoostingClassifier(n_estimators=5, random_state=0)


def test_evaluate_equals_standalone_metrics_on_the_same_draws() -> None:
    data = FactorData()
    out = evaluate(
        mixed,
        data,
        metrics=("dci", "mig", "sap", "infomec"),
        num_train=200,
        num_test=100,
        seed=3,
        n_jobs=1,
        options={"dci": {"estimator": SMALL_GBT}},
        progress=False,
    )
    rng = np.random.RandomState(3)
    z, y = sample_factor_code(data, mixed, 200, rng)
    z_test, y_test = sample_factor_code(data, mixed, 100, rng)
    want = {
        "dci": dci(z, y, z_test, y_test, estimator=SMALL_GBT, seed=3, n_jobs=1),
        "mig": mig(z, y),
        "sap": sap(z, y, z_test, y_test, seed=3, n_jobs=1),
        "infomec": infomec(z, y, discrete=False, seed=3, n_jobs=1),
    }
    for metric, result in want.items():
        for key, value in result.items():
            if key != "sklearn_version":
                np.testing.assert_array_equal(out[f"{metric}.{key}"], value, err_msg=key)
        assert out[f"{metric}.time_s"] >= 0.0
    assert (out["seed"], out["num_train"], out["num_test"]) == (3, 200, 100)
    assert out["representation"] == "continuous" and out["sklearn_version"]
    assert out["pixels"] == "unit" and out["preset"] is None


def test_evaluate_infers_discrete_codes_and_skips_unneeded_test_draws() -> None:
    out = evaluate(
        lambda x: x.flatten(1).long() - 1,
        FactorData(),
        metrics=("infomec", "mig"),
        num_train=150,
        n_jobs=1,
        progress=False,
    )
    assert out["representation"] == "discrete" and out["infomec.discrete"] is True
    np.testing.assert_allclose(np.diag(out["infomec.nmi"]), 1.0)
    assert out["num_test"] == 0
    explicit = evaluate(
        mixed,
        FactorData(),
        metrics=("infomec",),
        num_train=150,
        discrete=True,
        n_jobs=1,
        progress=False,
    )
    assert explicit["representation"] == "discrete"


def test_evaluate_presets_options_and_pixels() -> None:
    class Encoder(torch.nn.Module):
        pixels = "centered"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return mixed(x)

    data = FactorData()
    out = evaluate(
        Encoder(),
        data,
        metrics=("infomec",),
        num_train=150,
        preset="factorqvae",
        n_jobs=1,
        options={"infomec": {"max_iter": 50}},
        progress=False,
    )
    assert out["seed"] == 1 and out["preset"] == "factorqvae"
    assert out["infomec.n_neighbors"] == 3 and out["infomec.max_iter"] == 50
    assert data.pixels_seen == {"centered"} and out["pixels"] == "centered"
    loop = evaluate(
        mixed,
        data,
        metrics=("infomec",),
        num_train=150,
        preset="qlae_training_loop",
        seed=5,
        n_jobs=1,
        progress=False,
    )
    assert loop["seed"] == 5 and loop["infomec.path"] == "training_loop"
    assert "infomec.modularity_gap" in loop


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": ("dci", "beta_vae")}, "metrics must be a non-empty subset"),
        ({"metrics": ()}, "metrics must be a non-empty subset"),
        ({"preset": "tripod"}, "preset must be one of"),
        ({"options": {"dic": {}}}, "options has unknown metric"),
        ({"pixels": "raw"}, "pixels must be one of"),
        ({"num_test": 0}, "num_test must be an int >= 2"),
    ],
)
def test_evaluate_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        evaluate(mixed, FactorData(), num_train=20, progress=False, **kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_evaluate_samples_on_the_encoders_device() -> None:
    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mix = torch.nn.Parameter(MIX.clone())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.device == self.mix.device
            return x.flatten(1) @ self.mix

    kw = dict(
        metrics=("mig", "infomec", "dci"),
        num_train=120,
        num_test=60,
        n_jobs=1,
        options={"dci": {"estimator": "linear"}},
        progress=False,
    )
    gpu = evaluate(Encoder().cuda(), FactorData(), **kw)
    cpu = evaluate(Encoder(), FactorData(), **kw)
    for key in ("mig.mig", "infomec.infom", "infomec.infoe", "dci.disentanglement"):
        assert gpu[key] == pytest.approx(cpu[key], abs=1e-6), key


# --------------------------------------------------------------------------------------------
# FactorVAE score: dlib's known answers (batch 5, 3000/2000 votes, 2500 points, threshold 0)

FVAE = dict(batch_size=5, num_train=3000, num_eval=2000, num_variance_estimate=2500, threshold=0.0)


def test_factorvae_identity() -> None:
    out = factorvae_score(flat, IdentityData(), **FVAE)
    assert 0.9 <= out["train_accuracy"] <= 1.0
    assert 0.9 <= out["eval_accuracy"] <= 1.0
    assert out["num_active_dims"] == 10 == out["num_active_dims_dlib"]


def test_factorvae_zero_code() -> None:
    """All variances are 0: every ratio is NaN and argmin picks the first (dlib's behaviour)."""
    out = factorvae_score(lambda x: torch.zeros(len(x), 10), IdentityData(), **FVAE)
    assert 0.0 <= out["train_accuracy"] <= 0.2
    assert 0.0 <= out["eval_accuracy"] <= 0.2


def test_factorvae_prunes_low_variance_codes() -> None:
    def code(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.flatten(1), torch.zeros(len(x), 2)], dim=1)

    kw = dict(batch_size=8, num_train=200, num_eval=100, num_variance_estimate=300)
    out = factorvae_score(code, FactorData(), threshold=0.05, seed=2, **kw)
    assert (out["num_active_dims"], out["num_active_dims_dlib"]) == (3, 5)
    assert out["train_accuracy"] > 0.9
    dead = factorvae_score(lambda x: torch.zeros(len(x), 3), FactorData(), threshold=0.05, **kw)
    assert (dead["train_accuracy"], dead["eval_accuracy"], dead["num_active_dims"]) == (0.0, 0.0, 0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 2"):
        factorvae_score(flat, FactorData(), batch_size=1)


def test_evaluate_runs_factorvae_with_its_own_sampling() -> None:
    opts = {"factorvae": dict(batch_size=8, num_train=100, num_eval=50, num_variance_estimate=200)}
    out = evaluate(flat, FactorData(), metrics=("factorvae",), seed=4, options=opts, progress=False)
    want = factorvae_score(flat, FactorData(), seed=4, **opts["factorvae"])
    assert out["factorvae.train_accuracy"] == want["train_accuracy"]
    assert out["factorvae.eval_accuracy"] == want["eval_accuracy"]


# --------------------------------------------------------------------------------------------
# Table, JSON and command line


RESULTS = {
    "seed": 0,
    "num_train": 10000,
    "num_test": 5000,
    "representation": "discrete",
    "sklearn_version": "1.9.1",
    "dci.disentanglement": 0.123456,
    "dci.completeness": np.float64(0.5),
    "dci.informativeness": 0.75,
    "dci.importance_matrix": np.eye(2),
    "dci.time_s": 12.34,
    "infomec.infoc": float("nan"),
    "infomec.active": np.array([True, False]),
    "mig.mig": np.float32(0.25),
}


def test_format_table_lists_headline_scores() -> None:
    table = format_table(RESULTS)
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "value"]
    assert any(line.split() == ["dci.disentanglement", "0.1235"] for line in lines)
    assert any(line.split() == ["dci.time_s", "12.3"] for line in lines)
    assert any(line.split() == ["infomec.infoc", "nan"] for line in lines)
    assert any(line.split() == ["mig.mig", "0.2500"] for line in lines)
    assert "importance_matrix" not in table and "infomec.infom " not in table
    assert lines[-1] == "seed 0, 10000 train / 5000 test, discrete codes, scikit-learn 1.9.1"


def test_write_json_is_strict_and_atomic(tmp_path) -> None:
    path = write_json(RESULTS, tmp_path / "sub" / "metrics.json")
    data = json.loads(path.read_text())
    assert data["dci.importance_matrix"] == [[1.0, 0.0], [0.0, 1.0]]
    assert data["infomec.infoc"] is None and data["infomec.active"] == [True, False]
    assert data["mig.mig"] == 0.25 and data["dci.completeness"] == 0.5
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]
    assert to_jsonable({1: (np.int64(3), None, "x")}) == {"1": [3, None, "x"]}


def eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fqvae")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_eval_parser_options() -> None:
    args = eval_parser().parse_args(["eval", "run/model.pt"])
    assert args.func is run and args.metrics == ("dci", "infomec", "mig")
    assert (args.num_train, args.num_test, args.seed, args.json) == (10000, 5000, None, None)
    args = eval_parser().parse_args(
        [
            "eval",
            "m.pt",
            "--metrics",
            "mig, sap",
            "--data",
            "shapes3d",
            "--seed",
            "1",
            "--json",
            "out.json",
            "--device",
            "cpu",
            "--preset",
            "factorqvae",
            "--n-jobs",
            "2",
        ]
    )
    assert args.metrics == ("mig", "sap") and args.data == "shapes3d" and args.n_jobs == 2
    with pytest.raises(SystemExit):
        eval_parser().parse_args(["eval", "m.pt", "--metrics", "dci,bogus"])


@pytest.fixture
def fake_trainer(monkeypatch):
    """Stand-ins for the trainer's ``load_for_eval`` and the data package's ``load``, which
    other modules provide; the evaluation itself is real."""
    calls = {}

    def load_for_eval(path, device, repr=None):
        calls["load"] = (path, device, repr)
        return mixed, False, "fake3"

    def load(name, path=None):
        calls["data"] = (name, path)
        if name != "fake3":
            raise FileNotFoundError(f"no dataset {name}")
        return FactorData()

    import fqvae.data
    import fqvae.training.evaluation

    monkeypatch.setattr(fqvae.training.evaluation, "load_for_eval", load_for_eval)
    monkeypatch.setattr(fqvae.data, "load", load, raising=False)
    return calls


def test_eval_command_prints_table_and_writes_json(fake_trainer, tmp_path, capsys) -> None:
    ckpt = tmp_path / "model.pt"
    args = eval_parser().parse_args(
        [
            "eval",
            str(ckpt),
            "--metrics",
            "mig,infomec",
            "--num-train",
            "120",
            "--device",
            "cpu",
            "--n-jobs",
            "1",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "mig.mig" in out and "infomec.infom" in out
    data = json.loads((tmp_path / "model.metrics.json").read_text())
    assert data["checkpoint"] == str(ckpt) and data["data"] == "fake3" and data["device"] == "cpu"
    assert data["num_train"] == 120 and 0.0 <= data["mig.mig"] <= 1.0
    assert fake_trainer["load"] == (ckpt, "cpu", None) and fake_trainer["data"] == ("fake3", None)


def test_eval_command_reports_errors(fake_trainer, tmp_path, capsys) -> None:
    args = eval_parser().parse_args(["eval", str(tmp_path / "m.pt"), "--data", "nope"])
    assert args.func(args) == 2
    assert "fqvae eval: error: no dataset nope" in capsys.readouterr().err

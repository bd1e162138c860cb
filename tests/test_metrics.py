"""Metric math: dlib's known answers (spec metrics.md §10), InfoMEC properties, reference parity,
edge cases. Dataset sampling, ``evaluate``, the FactorVAE score and the CLI helpers are tested
in ``test_metrics_evaluate.py``."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.feature_selection import mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, mutual_info_score
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from fqvae.metrics import completeness, dci, disentanglement, infomec, mig, sap
from fqvae.metrics._information import histogram_discretize, mutual_info_matrix
from fqvae.metrics._inputs import label_encode

LN2_LN10 = 1.0 - math.log(2) / math.log(10)
# A light boosted model for the end-to-end DCI checks; the default GBT is checked for parity.
SMALL_GBT = GradientBoostingClassifier(n_estimators=5, random_state=0)


def identity_points(n: int, rng: np.random.RandomState) -> np.ndarray:
    """dlib's IdentityObservationsData: 10 factors uniform on 1..10, drawn in batches of 16."""
    batches = [rng.randint(1, 11, size=(min(16, n - s), 10)) for s in range(0, n, 16)]
    return np.concatenate(batches).astype(np.float64)


@pytest.fixture(scope="module")
def identity_split() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    return identity_points(1000, rng), identity_points(1000, rng)


@pytest.fixture(scope="module")
def identity_3000() -> np.ndarray:
    return identity_points(3000, np.random.RandomState(0))


def shuffle_rows(x: np.ndarray) -> np.ndarray:
    rng = np.random.RandomState(0)
    return np.stack([rng.permutation(row) for row in x])


# --------------------------------------------------------------------------------------------
# DCI


I5 = 5.0 * np.eye(5)


@pytest.mark.parametrize(
    ("r", "d", "c"),
    [
        (I5, 1.0, 1.0),
        (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),
        (np.zeros((10, 10)), 0.0, 0.0),
        (np.vstack([I5, I5]), 1.0, LN2_LN10),
        (I5[:2, :], 1.0, 1.0),
        (np.hstack([I5, I5]), LN2_LN10, 1.0),
    ],
    ids=["diagonal", "empty-code", "zeros", "redundant-codes", "missed-factors", "shared-code"],
)
def test_dci_importance_known_answers(r: np.ndarray, d: float, c: float) -> None:
    assert disentanglement(r) == pytest.approx(d, abs=1e-7)
    assert completeness(r) == pytest.approx(c, abs=1e-7)


def test_dci_identity_code(identity_split) -> None:
    x_train, x_test = identity_split
    out = dci(x_train, x_train, x_test, x_test, estimator=SMALL_GBT, n_jobs=2)
    assert 0.9 <= out["disentanglement"] <= 1.0
    assert 0.9 <= out["completeness"] <= 1.0
    assert out["informativeness"] == pytest.approx(1.0)
    assert out["importance_matrix"].shape == (10, 10)
    np.testing.assert_allclose(out["importance_matrix"].sum(axis=0), 1.0)


def test_dci_shuffled_code(identity_split) -> None:
    x_train, x_test = identity_split
    out = dci(shuffle_rows(x_train), x_train, shuffle_rows(x_test), x_test, estimator=SMALL_GBT)
    assert 0.0 <= out["disentanglement"] <= 0.2
    assert 0.0 <= out["completeness"] <= 0.2


def test_dci_duplicated_code(identity_split) -> None:
    x_train, x_test = identity_split
    z_train, z_test = np.hstack([x_train, x_train]), np.hstack([x_test, x_test])
    out = dci(z_train, x_train, z_test, x_test, estimator=SMALL_GBT, n_jobs=2)
    assert 0.9 <= out["disentanglement"] <= 1.0
    assert out["completeness"] == pytest.approx(LN2_LN10, abs=0.1)


def test_dci_gbt_matches_dlib_loop() -> None:
    """``estimator="gbt"`` is dlib's compute_importance_gbt (default GBT per factor), written
    out here as dlib writes it, plus the seed."""
    rng = np.random.RandomState(1)
    y = rng.randint(3, size=(240, 3))
    z = np.c_[y + 0.4 * rng.randn(240, 3), rng.randn(240)]
    z_train, z_test, y_train, y_test = z[:160], z[160:], y[:160], y[160:]
    out = dci(z_train, y_train, z_test, y_test, n_jobs=1)
    importance = np.zeros((4, 3))
    train_acc, test_acc = [], []
    for k in range(3):
        model = GradientBoostingClassifier(random_state=0).fit(z_train, y_train[:, k])
        importance[:, k] = np.abs(model.feature_importances_)
        train_acc.append(np.mean(model.predict(z_train) == y_train[:, k]))
        test_acc.append(np.mean(model.predict(z_test) == y_test[:, k]))
    np.testing.assert_array_equal(out["importance_matrix"], importance)
    assert out["informativeness_train"] == np.mean(train_acc)
    assert out["informativeness"] == np.mean(test_acc)
    per_code = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=3)
    assert out["disentanglement"] == pytest.approx(
        np.sum(per_code * importance.sum(axis=1) / importance.sum()), rel=1e-12
    )
    assert out["sklearn_version"] and out["seed"] == 0
    assert (out["num_train"], out["num_test"]) == (160, 80)


def test_dci_parallel_equals_sequential_and_accepts_torch_and_raw_values() -> None:
    rng = np.random.RandomState(2)
    y = rng.randint(4, size=(300, 3))
    z = y @ rng.rand(3, 4) + 0.3 * rng.randn(300, 4)
    values = np.linspace(-1.0, 2.5, 4)[y]  # raw factor values, label-encoded internally
    one = dci(z[:200], y[:200], z[200:], y[200:], estimator=SMALL_GBT, n_jobs=1)
    two = dci(
        torch.tensor(z[:200]),
        values[:200],
        torch.tensor(z[200:]),
        values[200:],
        estimator=SMALL_GBT,
        n_jobs=2,
    )
    np.testing.assert_array_equal(one["importance_matrix"], two["importance_matrix"])
    assert one["informativeness"] == two["informativeness"]


@pytest.mark.parametrize("estimator", ["random_forest", "linear"])
def test_dci_other_estimators(identity_split, estimator: str) -> None:
    """Not comparable with dlib's numbers (importance spreads more), but still ordered."""
    x_train, x_test = (x[:300, :4] for x in identity_split)
    out = dci(x_train, x_train, x_test, x_test, estimator=estimator)
    bad = dci(shuffle_rows(x_train), x_train, shuffle_rows(x_test), x_test, estimator=estimator)
    assert out["estimator"] == estimator
    np.testing.assert_allclose(out["importance_matrix"].sum(axis=0), 1.0)
    np.testing.assert_array_equal(np.argmax(out["importance_matrix"], axis=0), np.arange(4))
    assert out["disentanglement"] > 0.5 and out["completeness"] > 0.5
    assert bad["disentanglement"] < 0.2 and bad["completeness"] < 0.2


def test_dci_constant_latent_has_zero_importance() -> None:
    rng = np.random.RandomState(3)
    y = rng.randint(3, size=(200, 2))
    z = np.c_[y, np.zeros(200)]
    out = dci(z[:150], y[:150], z[150:], y[150:], estimator=SMALL_GBT)
    np.testing.assert_array_equal(out["importance_matrix"][2], 0.0)
    assert out["disentanglement"] == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------------------------
# MIG


def test_mig_identity(identity_3000) -> None:
    x = identity_3000
    assert 0.9 <= mig(x, x, discretize=False)["mig"] <= 1.0
    # Ten equal-width bins over 1..10 keep every value apart: same answer as the raw labels.
    assert mig(x, x, num_bins=10)["mig"] == mig(x, x, discretize=False)["mig"]


def test_mig_zero_code(identity_3000) -> None:
    x = identity_3000
    out = mig(np.zeros_like(x), x)
    assert 0.0 <= out["mig"] <= 0.2
    np.testing.assert_array_equal(out["mi"], 0.0)


def test_mig_duplicated_code(identity_3000) -> None:
    x = identity_3000
    assert 0.0 <= mig(np.hstack([x, x]), x, discretize=False)["mig"] <= 0.1


def test_mig_matches_dlib_formula() -> None:
    rng = np.random.RandomState(4)
    y = rng.randint(5, size=(500, 3))
    z = (y @ rng.randn(3, 4) + rng.randn(500, 4)).astype(np.float32)
    out = mig(z, y)
    binned = np.stack(
        [np.digitize(z[:, d], np.histogram(z[:, d], 20)[1][:-1]) for d in range(4)], axis=1
    )
    m = np.array([[mutual_info_score(y[:, k], binned[:, d]) for k in range(3)] for d in range(4)])
    h = np.array([mutual_info_score(y[:, k], y[:, k]) for k in range(3)])
    top = np.sort(m, axis=0)[::-1]
    np.testing.assert_array_equal(out["mi"], m)
    assert out["mig"] == np.mean((top[0] - top[1]) / h)


# --------------------------------------------------------------------------------------------
# SAP


def test_sap_continuous_known_answers(identity_3000) -> None:
    rng = np.random.RandomState(0)
    x, x_test = identity_3000, identity_points(3000, rng)
    kw = dict(continuous_factors=True)
    assert 0.9 <= sap(x, x, x_test, x_test, **kw)["sap"] <= 1.0
    assert 0.0 <= sap(np.zeros_like(x), x, np.zeros_like(x_test), x_test, **kw)["sap"] <= 0.2
    assert 0.0 <= sap(np.hstack([x, x]), x, **kw)["sap"] <= 0.2


def test_sap_discrete_factors() -> None:
    """Binary factors, each read off its own code: accuracy ~1 there and ~1/2 elsewhere."""
    rng = np.random.RandomState(5)
    y = rng.randint(2, size=(400, 2))
    z = np.c_[y + 0.05 * rng.randn(400, 2), rng.randn(400)]
    out = sap(z[:300], y[:300], z[300:], y[300:], n_jobs=2)
    scores = out["score_matrix"]
    assert scores.shape == (3, 2)
    assert scores[0, 0] > 0.95 and scores[1, 1] > 0.95
    assert np.all(scores[[1, 2], 0] < 0.7) and np.all(scores[[0, 2], 1] < 0.7)
    assert 0.3 <= out["sap"] <= 0.7
    sequential = sap(z[:300], y[:300], z[300:], y[300:], n_jobs=1)
    np.testing.assert_array_equal(scores, sequential["score_matrix"])


# --------------------------------------------------------------------------------------------
# Plug-in MI helpers


def test_plugin_mutual_information_is_sklearn_to_the_bit() -> None:
    rng = np.random.RandomState(6)
    a = rng.randint(7, size=(800, 3))
    b = np.c_[a[:, :1] * 3 + rng.randint(3, size=(800, 1)), rng.randint(20, size=(800, 2))]
    ca, sa = label_encode(a)
    cb, sb = label_encode(b)
    expected = [[mutual_info_score(a[:, i], b[:, j]) for j in range(3)] for i in range(3)]
    np.testing.assert_array_equal(mutual_info_matrix(ca, sa, cb, sb), expected)


def test_histogram_discretize_constant_column_is_one_bin() -> None:
    x = np.c_[np.full(10, 3.0), np.arange(10.0)]
    b = histogram_discretize(x, 5)
    assert np.unique(b[:, 0]).size == 1 and b[:, 1].min() == 1 and b[:, 1].max() == 5


# --------------------------------------------------------------------------------------------
# InfoMEC


def balanced_grid(sizes: tuple[int, ...], reps: int) -> np.ndarray:
    """Every combination of factor classes, ``reps`` times: exactly independent, uniform."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1)
    return np.repeat(grid.reshape(-1, len(sizes)), reps, axis=0)


def test_infomec_perfect_discrete_with_dead_latent() -> None:
    s = balanced_grid((4, 3, 5), 6)
    z = np.c_[s[:, 2], s[:, 0], np.full(len(s), 7), s[:, 1]]  # permuted, plus a dead latent
    out = infomec(z, s, discrete=True)
    assert out["infom"] == pytest.approx(1.0)
    assert out["infoc"] == pytest.approx(1.0)
    assert out["infoe"] == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_array_equal(out["active"], [True, True, False, True])
    assert out["num_active"] == 3


def test_infomec_entangled_closed_form() -> None:
    """s1 has 4 classes, s2 two; z1 = s1 // 2, z2 = s2, z3 = s1 // 2 + 2 s2.

    NMI = [[1/2, 0, 1/2], [0, 1, 1]] (I(s1; s1 // 2) = ln 2, H(s1) = ln 4), so
    InfoM = 2 * mean(1, 1, 2/3) - 1 = 7/9 and InfoC = (mean(1/2, 1/2) - 1/3) / (2/3) = 1/4.
    s1 is predictable only up to s1 % 2: e1 = (ln 4 - ln 2) / ln 4 = 1/2, e2 = 1, InfoE = 3/4.
    """
    s = balanced_grid((4, 2), 25)
    z = np.c_[s[:, 0] // 2, s[:, 1], s[:, 0] // 2 + 2 * s[:, 1]]
    out = infomec(z, s, discrete=True)
    np.testing.assert_allclose(out["nmi"], [[0.5, 0.0, 0.5], [0.0, 1.0, 1.0]], atol=1e-12)
    assert out["infom"] == pytest.approx(7 / 9)
    assert out["infoc"] == pytest.approx(0.25)
    np.testing.assert_allclose(out["infoe_per_factor"], [0.5, 1.0], atol=2e-3)
    assert out["infoe"] == pytest.approx(0.75, abs=2e-3)


def test_infomec_noisy_continuous_close_to_clean() -> None:
    rng = np.random.RandomState(7)
    s = rng.randint(5, size=(1000, 3))
    clean = infomec(s + 1e-3 * rng.randn(1000, 3), s, discrete=False)
    noisy = infomec(s + 0.3 * rng.randn(1000, 3), s, discrete=False)
    for key in ("infom", "infoc"):
        assert noisy[key] == pytest.approx(clean[key], abs=0.05)
    assert clean["infoe"] > 0.99
    assert noisy["infoe"] < 0.99
    very_noisy = infomec(s + 1.5 * rng.randn(1000, 3), s, discrete=False)
    assert very_noisy["infoe"] < noisy["infoe"]


def entangled_continuous(rng: np.random.RandomState, n: int = 600) -> tuple[np.ndarray, ...]:
    s = rng.randint(4, size=(n, 3))
    z = np.c_[s @ np.array([[1.0, 0.2], [0.1, 1.0], [0.0, 0.3]]), s[:, 2], rng.randn(n)]
    return s, z + 0.2 * rng.randn(n, 4)


def test_infomec_invariant_to_permutations_and_relabelling() -> None:
    rng = np.random.RandomState(8)
    s, z = entangled_continuous(rng)
    perm_z, perm_s = np.array([2, 0, 3, 1]), np.array([1, 2, 0])
    base = infomec(z, s, discrete=False)
    moved = infomec(z[:, perm_z], s[:, perm_s], discrete=False)
    np.testing.assert_allclose(moved["nmi"], base["nmi"][perm_s][:, perm_z], rtol=1e-12)
    for key in ("infom", "infoc"):
        assert moved[key] == pytest.approx(base[key], rel=1e-12)
    assert moved["infoe"] == pytest.approx(base["infoe"], abs=1e-4)

    codes = np.clip(np.round(z), -2, 6).astype(np.int64)
    relabel = rng.permutation(40) + 100  # a bijection of the code values
    d_base = infomec(codes, s, discrete=True)
    d_moved = infomec(relabel[codes + 2][:, perm_z], s, discrete=True)
    np.testing.assert_allclose(d_moved["nmi"], d_base["nmi"][:, perm_z], rtol=1e-12)
    for key in ("infom", "infoc"):
        assert d_moved[key] == pytest.approx(d_base[key], rel=1e-12)
    assert d_moved["infoe"] == pytest.approx(d_base["infoe"], abs=1e-4)


def test_infomec_nmi_invariant_to_positive_affine_rescaling() -> None:
    rng = np.random.RandomState(9)
    s, z = entangled_continuous(rng)
    scaled = z * np.array([3.0, 0.5, 1.0, 20.0]) + np.array([1.0, -4.0, 0.0, 2.0])
    np.testing.assert_allclose(
        infomec(scaled, s, discrete=False)["nmi"], infomec(z, s, discrete=False)["nmi"], atol=1e-9
    )


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("path", ["standalone", "training_loop"])
def test_infomec_outputs_bounded(discrete: bool, path: str) -> None:
    rng = np.random.RandomState(10)
    s, z = entangled_continuous(rng)
    z = np.round(z).astype(np.int64) if discrete else z
    out = infomec(z, s, discrete=discrete, path=path, n_neighbors=3)
    for key in ("infom", "infoe", "infoc"):
        assert np.isfinite(out[key]) and -1e-9 <= out[key] <= 1.0 + 1e-9
    assert out["nmi"].shape == (3, 4) and np.all(out["nmi"] >= 0)
    assert np.all(out["nmi"] <= 1.05)  # kNN estimates can overshoot slightly
    if path == "training_loop":
        assert 0.0 <= out["modularity_gap"] <= 1.05 and 0.0 <= out["compactness_gap"] <= 1.05
        assert {f"nmi_binned_{b}" for b in (10, 20, 50, "auto")} <= out.keys()


def reference_infomec(z: np.ndarray, s: np.ndarray, discrete: bool, k: int, seed: int) -> dict:
    """The QLAE authors' standalone InfoMEC as spec §7.1 writes it, pair by pair, with dense
    one-hot features and fitted null models (``multi_class`` left out)."""
    num_s, num_z = s.shape[1], z.shape[1]
    nmi = np.zeros((num_s, num_z))
    for i in range(num_s):
        h = mutual_info_score(s[:, i], s[:, i])
        for j in range(num_z):
            if discrete:
                nmi[i, j] = mutual_info_score(s[:, i], z[:, j]) / h
            else:
                x = (z[:, j] - z[:, j].mean()) / z[:, j].std()
                nmi[i, j] = (
                    mutual_info_classif(
                        x[:, None],
                        s[:, i],
                        discrete_features=False,
                        n_neighbors=k,
                        random_state=seed,
                    )[0]
                    / h
                )
    r = z.max(axis=0) - z.min(axis=0)
    active = r > 0 if discrete else r > r.max() / 20
    p = nmi[:, active]
    a = p.shape[1]
    infom = (np.mean(p.max(axis=0) / p.sum(axis=0)) - 1 / num_s) / (1 - 1 / num_s)
    infoc = (np.mean(p.max(axis=1) / p.sum(axis=1)) - 1 / a) / (1 - 1 / a)
    x = (
        OneHotEncoder(sparse_output=False).fit_transform(z)
        if discrete
        else (StandardScaler().fit_transform(z))
    )

    def lr_loss(features, y):
        model = LogisticRegression(C=np.inf, max_iter=100, tol=1e-4, class_weight="balanced")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return log_loss(y, model.fit(features, y).predict_proba(features))

    e = [(lr_loss(0 * x, y) - lr_loss(x, y)) / lr_loss(0 * x, y) for y in s.T]
    return {"nmi": nmi, "infom": infom, "infoc": infoc, "infoe": np.mean(e), "active": active}


@pytest.mark.parametrize("discrete", [True, False])
def test_infomec_matches_reference_loop(discrete: bool) -> None:
    rng = np.random.RandomState(11)
    s, z = entangled_continuous(rng, 500)
    z = np.c_[np.round(z[:, :3] * 2).astype(np.int64), np.zeros(500, np.int64)] if discrete else z
    ours = infomec(z, s, discrete=discrete, n_jobs=2)
    ref = reference_infomec(z, s, discrete, k=10, seed=0)
    np.testing.assert_array_equal(ours["active"], ref["active"])
    np.testing.assert_allclose(ours["nmi"], ref["nmi"], rtol=1e-12, atol=1e-15)
    assert ours["infom"] == pytest.approx(ref["infom"], rel=1e-12)
    assert ours["infoc"] == pytest.approx(ref["infoc"], rel=1e-12)
    assert ours["infoe"] == pytest.approx(ref["infoe"], abs=1e-6)


def test_infomec_training_loop_path() -> None:
    rng = np.random.RandomState(12)
    s = rng.randint(4, size=(500, 2))
    ints = np.c_[4 * s[:, 0], s[:, 1], s[:, 0] + 8 * s[:, 1], rng.randint(2, size=500)]
    floats = ints.astype(np.float64)  # e.g. quantized values rather than indices
    loop = infomec(floats, s, discrete=True, path="training_loop", n_neighbors=3)
    stand = infomec(floats, s, discrete=True)
    # Ranges 12, 3, 27, 1: active above 27/8 here, above 0 in the standalone discrete path.
    assert list(loop["active"]) == [True, False, True, False]
    assert list(stand["active"]) == [True, True, True, True]
    np.testing.assert_array_equal(loop["nmi"][:, ~loop["active"]], 0.0)
    np.testing.assert_allclose(loop["nmi"][:, loop["active"]], stand["nmi"][:, loop["active"]])
    # InfoE one-hot encodes integer codes only; float codes are standardised in this path.
    assert loop["infoe"] == infomec(floats, s, discrete=False)["infoe"]
    loop_ints = infomec(ints, s, discrete=True, path="training_loop")
    assert loop_ints["infoe"] == stand["infoe"]
    assert loop["path"] == "training_loop" and loop["num_active"] == 2


# --------------------------------------------------------------------------------------------
# Edge cases: clear errors or documented values, never a crash deep inside scikit-learn


def test_single_latent() -> None:
    rng = np.random.RandomState(13)
    y = rng.randint(3, size=(100, 2))
    z = y[:, :1] + 0.1 * rng.randn(100, 1)
    with pytest.raises(ValueError, match="at least 2 latents"):
        dci(z[:50], y[:50], z[50:], y[50:])
    with pytest.raises(ValueError, match="at least 2 latents"):
        mig(z, y)
    with pytest.raises(ValueError, match="at least 2 latents"):
        sap(z[:50], y[:50], z[50:], y[50:])
    with pytest.warns(RuntimeWarning, match="single active latent"):
        out = infomec(z, y, discrete=False)
    assert math.isnan(out["infoc"]) and np.isfinite(out["infom"])


def test_constant_latents() -> None:
    rng = np.random.RandomState(14)
    y = rng.randint(3, size=(200, 2))
    z = np.c_[y + 0.1 * rng.randn(200, 2), np.full(200, 2.5)]
    assert np.all(mig(z, y)["mi"][2] == 0.0)
    out = infomec(z, y, discrete=False)
    assert not out["active"][2] and np.all(out["nmi"][:, 2] == 0.0)
    dead = infomec(np.zeros((200, 3)), y, discrete=False)
    assert (dead["infom"], dead["infoc"], dead["num_active"]) == (0.0, 0.0, 0)
    assert dead["infoe"] == pytest.approx(0.0, abs=1e-9)


def test_factor_with_one_class_is_rejected() -> None:
    rng = np.random.RandomState(15)
    y = np.c_[rng.randint(3, size=100), np.zeros(100, np.int64)]
    z = rng.randn(100, 3)
    for call in (
        lambda: dci(z[:50], y[:50], z[50:], y[50:]),
        lambda: mig(z, y),
        lambda: sap(z[:50], y[:50], z[50:], y[50:]),
        lambda: sap(z, y.astype(float), continuous_factors=True),
        lambda: infomec(z, y, discrete=False),
    ):
        with pytest.raises(ValueError, match=r"factors(_train)?\[:, 1\] has a single class"):
            call()


def test_fewer_samples_than_classes() -> None:
    """Eight points of a factor with 8 classes: each class is seen once."""
    y = np.c_[np.arange(8), np.arange(8) % 2]
    z = np.c_[np.arange(8.0), np.arange(8) % 2 + 0.5, np.ones(8)]
    assert mig(z, y)["mig"] >= 0.0
    assert np.isfinite(infomec(z.astype(np.int64), y, discrete=True)["infom"])
    assert 0.0 <= dci(z, y, z, y, estimator=SMALL_GBT)["informativeness"] <= 1.0
    with pytest.raises(ValueError, match=r"every class of factors\[:, 0\] occurs once"):
        infomec(z, y, discrete=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_latents_are_rejected(bad: float) -> None:
    rng = np.random.RandomState(16)
    y = rng.randint(3, size=(40, 2))
    z = rng.randn(40, 3)
    z[5, 1] = bad
    with pytest.raises(ValueError, match=r"latents_train contains NaN or inf .*row 5, column 1"):
        dci(z, y, z, y)
    with pytest.raises(ValueError, match="latents contains NaN"):
        mig(z, y)
    with pytest.raises(ValueError, match="latents contains NaN"):
        infomec(z, y, discrete=False)


def test_bad_shapes_and_arguments() -> None:
    rng = np.random.RandomState(17)
    y = rng.randint(3, size=(40, 2))
    z = rng.randn(40, 3)
    with pytest.raises(ValueError, match="latents must be 2-D"):
        mig(z[:, 0], y)
    with pytest.raises(ValueError, match="same number of samples"):
        mig(z[:30], y)
    with pytest.raises(ValueError, match="same number of columns"):
        dci(z, y, z[:, :2], y)
    with pytest.raises(ValueError, match="estimator must be one of"):
        dci(z, y, z, y, estimator="xgboost")
    with pytest.raises(ValueError, match="path must be one of"):
        infomec(z, y, discrete=False, path="paper")
    with pytest.raises(ValueError, match="discrete must be True or False"):
        infomec(z, y, discrete=None)
    with pytest.raises(ValueError, match="must hold numbers"):
        mig(np.array([["a", "b"], ["c", "d"]]), y[:2])
    with pytest.raises(ValueError, match="n_jobs"):
        dci(z, y, z, y, n_jobs=0)
    with pytest.raises(ValueError, match="latents_test and factors_test are required"):
        sap(z, y)

"""studies/codes.py: a finished quantized run read through its codes."""

import json

import numpy as np
import pytest
from study_scripts import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("codes")


def test_factor_shares_separate_a_pure_latent_from_a_mixture(script):
    rng = np.random.RandomState(0)
    s = np.stack([rng.randint(0, 10, 4000), rng.randint(0, 5, 4000)], 1)
    z = np.stack([2.0 * s[:, 0], s[:, 0] + 2.0 * s[:, 1], np.full(4000, 3.0)], 1)
    shares = script.factor_shares(z, s)
    np.testing.assert_allclose(shares[0], [1.0, 0.0], atol=0.01)
    # var(s0) = 8.25 and var(2 s1) = 8: the mixture splits about evenly
    np.testing.assert_allclose(shares[1], [8.25 / 16.25, 8 / 16.25], atol=0.05)
    assert shares[2].tolist() == [0.0, 0.0]


def test_a_run_reports_each_varying_latents_factor_shares(script, finished_run, tmp_path):
    out = tmp_path / "codes.json"
    script.main([str(finished_run), "--data", "toy", "--num-train", "200", "--out", str(out)])
    (row,) = json.loads(out.read_text())
    assert row["factors"] == ["x", "y", "size", "hue"]
    latents = json.loads((finished_run / "config.json").read_text())["config"]["model"]["latents"]
    assert len(row["shares"]) == latents - row["held"]
    assert all(len(v) == 4 and all(0 <= x <= 1 for x in v) for v in row["shares"].values())
    assert set(row["index"]) == set(row["value"]) == set(script.KEYS)

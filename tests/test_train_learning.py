"""Learning: the demo's comparison on a reduced setting (800 steps instead of 2,500, metrics on
1,000/500 points). FactorQVAE and the autoencoder train the same way on the demo set; FactorQVAE
must concentrate each factor in fewer latents than the autoencoder measured in the same test
(DCI completeness and InfoC), and both must have learned to reconstruct.

Measured on a quiet 2-core CPU with AMX (seed 1, one thread, 112 s, the demo's fused Adam and
bf16 matmuls), FactorQVAE (the demo's settings, without the KL term) against the autoencoder:
DCI completeness 0.420 / 0.134, InfoC 0.179 / 0.108, reconstruction MSE 0.016 / 0.033 (the mean
image scores 0.11). At this length DCI-D (0.207 / 0.218) and InfoM (0.362 / 0.389) do not
favour FactorQVAE, so they are not asserted. The thresholds were set at half of the gaps an
earlier recipe gave (completeness 0.310 / 0.160, InfoC 0.194 / 0.104) and kept; with full-fp32
matmuls and the per-tensor Adam the same test measured 0.379 / 0.160 and 0.178 / 0.104."""

from __future__ import annotations

import pytest
import torch

from fqvae.training.demo import MODELS, demo_config, demo_data, format_comparison, run_demo

STEPS = 800


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_factorqvae_concentrates_factors_more_than_the_autoencoder(tmp_path):
    configs = {
        m: demo_config(m, STEPS, str(tmp_path), "cpu", 1000, 500, seed=1, progress=False)
        for m in MODELS
    }
    for cfg in configs.values():
        cfg.eval.n_jobs = 1
    results = run_demo(configs, demo_data())
    table = format_comparison(results)
    print(table)
    fq, ae = results["factorqvae"], results["ae"]
    assert f"latents in use{fq['infomec.num_active']:>22d}{ae['infomec.num_active']:>12d}" in table
    assert fq["infomec.num_active"] < ae["infomec.num_active"]  # the TC term holds spare latents
    assert fq["dci.completeness"] >= ae["dci.completeness"] + 0.08
    assert fq["infomec.infoc"] >= ae["infomec.infoc"] + 0.04
    assert fq["recon.mse"] < 0.08 and ae["recon.mse"] < 0.08
    assert (tmp_path / "factorqvae" / "traversals.png").exists()

"""studies/metric_ceiling.py: its hand-made codes hold the factors they name, and the README's
reading of its table (constant latents cost DCI-D that noise latents do not) holds at small
sample sizes too."""

import json

import numpy as np
import pytest
from study_scripts import load_script


@pytest.fixture(scope="module")
def ceiling():
    return load_script("metric_ceiling")


def test_codes_copy_the_kept_factor_classes(ceiling):
    dataset = ceiling.class_dataset()
    idx = np.array([0, 12345, len(dataset) - 1])
    x = dataset.batch(idx, pixels="unit")
    code = ceiling.KeepFactors([2, 5], noise=False)(x).numpy()
    classes = dataset.index_to_factors(idx)
    assert code.shape == (3, ceiling.NUM_LATENTS)
    np.testing.assert_array_equal(code[:, :2], classes[:, [2, 5]])
    assert not code[:, 2:].any()
    noisy = ceiling.KeepFactors([2], noise=True)(x).numpy()
    np.testing.assert_array_equal(noisy[:, 0], classes[:, 2])
    assert noisy[:, 1:].max() < ceiling.NOISE_VALUES and noisy[:, 1:].std() > 0


def test_table_written_and_not_overwritten(ceiling, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        ceiling,
        "CODES",
        {k: ceiling.CODES[k] for k in ("all six factors", "hues", "hues, 9 noise latents")},
    )
    out = tmp_path / "ceiling.json"
    args = ["--out", str(out), "--num-train", "400", "--num-test", "200"]
    assert ceiling.main(args) == 0
    rows = json.loads(out.read_text())["codes"]
    assert rows["all six factors"]["dci.disentanglement"] > 0.95
    # an unlearned factor's importance lands on the hue latents when the rest are constant,
    # and on the noise latents otherwise
    assert rows["hues"]["dci.disentanglement"] < 0.45
    assert (
        rows["hues, 9 noise latents"]["dci.disentanglement"]
        > rows["hues"]["dci.disentanglement"] + 0.1
    )
    assert ceiling.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_demo_grid_keeps_the_demo_factors_latent(ceiling):
    from fqvae.training.demo import demo_data

    grid = ceiling.class_dataset("demo")
    demo = demo_data()
    assert grid.factor_sizes == demo.factor_sizes
    assert grid.latent_factor_indices == demo.latent_factor_indices
    np.testing.assert_array_equal(grid.index_to_factors(np.arange(len(grid))), demo.classes)


def test_replot_draws_the_chart_of_a_written_table(ceiling, tmp_path, capsys):
    table = {
        "settings": {"grid": "demo", "num_train": 10, "num_test": 5},
        "codes": {"hues": {"dci.disentanglement": 0.6, "infomec.infom": 0.97}},
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    assert ceiling.main(["--replot", str(path)]) == 0
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ceiling.main(["--replot", str(tmp_path / "missing.json")]) == 2
    assert "--replot" in capsys.readouterr().err

"""studies/factor_accuracy.py: one held-out accuracy per factor of a trained run, beside chance."""

import json

import pytest
from study_scripts import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("factor_accuracy")


def test_accuracy_per_factor_of_a_run(script, finished_run, tmp_path):
    out = tmp_path / "acc.json"
    args = [str(finished_run), "--data", "toy", "--num-train", "200", "--num-test", "100"]
    assert script.main([*args, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["chance"] == {"x": 1 / 8, "y": 1 / 8, "size": 1 / 4, "hue": 1 / 8}
    (row,) = result["runs"].values()
    assert set(row) == {"x", "y", "size", "hue"} and all(0 <= v <= 1 for v in row.values())
    assert script.main([*args, "--out", str(out)]) == 2


def test_a_folder_without_a_checkpoint_is_named(script, tmp_path, capsys):
    assert script.main([str(tmp_path), "--out", str(tmp_path / "a.json")]) == 2
    assert f"no checkpoint.pt in {tmp_path}" in capsys.readouterr().err

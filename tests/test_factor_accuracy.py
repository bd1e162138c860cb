"""studies/factor_accuracy.py: one held-out accuracy per factor of a trained run, beside chance."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "studies" / "factor_accuracy.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("factor_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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

"""The benchmark scripts run end to end on tiny cases and write the JSON they promise, and the
fused gumbel path keeps no ``N x K`` intermediates (peak resident memory, measured)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fqvae
from fqvae import ops, reference
from fqvae.training.runtime import cpu_bf16_matmul

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import common  # noqa: E402

NO_COMPILE = "torch.compile(reference),torch.compile(plain eager)"


def run_script(name: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{name}.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_quantize_script_reports_every_impl_with_speedups(tmp_path):
    result = run_script(
        "quantize",
        "--device=cpu",
        "--cases=a",
        "--min-time=0.01",
        f"--skip={NO_COMPILE}",
        tmp_path=tmp_path,
    )
    rows = result["rows"]
    seen = {(r["impl"], r["mode"]) for r in rows}
    for op in ("nearest", "gumbel"):
        for mode in ("fwd", "fwd+bwd"):
            assert ("eager reference", f"{op} {mode}") in seen
            assert ("fqvae cpp", f"{op} {mode}") in seen
    assert all(r["median_ms"] > 0 and r["speedup"] > 0 for r in rows)
    assert not any(r["impl"].startswith("torch.compile") for r in rows)
    assert result["meta"]["torch"] == torch.__version__


def test_quantize_script_defaults_to_sizes_a_cpu_can_afford(tmp_path):
    result = run_script(
        "quantize",
        "--device=cpu",
        "--cases=b,c",
        "--ops=nearest",
        "--modes=fwd",
        "--min-time=0.01",
        f"--skip={NO_COMPILE}",
        tmp_path=tmp_path,
    )
    assert result["meta"]["size"] == "quick"
    cases = {r["case"] for r in result["rows"]}
    assert cases == {"b: (4,16,32,32) K=8", "b: (4,16,32,32) K=64", "c: 2^18 elems K=16"}


def test_permute_and_train_step_scripts_run(tmp_path):
    permute = run_script(
        "permute", "--device=cpu", "--batches=32", "--min-time=0.01", tmp_path=tmp_path
    )
    impls = {r["impl"] for r in permute["rows"]}
    assert {"per-latent randperm loop", "fqvae cpp"} <= impls
    step = run_script(
        "train_step",
        "--device=cpu",
        "--arch=small",
        "--batch=8",
        "--precisions=fp32",
        "--min-time=0.01",
        tmp_path=tmp_path,
    )
    assert {r["impl"] for r in step["rows"]} == {"reference ops", "fused ops (cpp)"}


def test_train_settings_script_times_each_setting_against_the_default(tmp_path):
    result = run_script(
        "train_settings", "--device=cpu", "--models=ae", "--min-time=0.01", tmp_path=tmp_path
    )
    impls = [r["impl"] for r in result["rows"]]
    expected = ["default", "--fused-optim"]
    if cpu_bf16_matmul():
        expected += ["--matmul reduced", "--fused-optim --matmul reduced"]
    assert impls == expected + ["--amp bf16", "--fused-optim --amp bf16"]
    assert result["rows"][0]["speedup"] == 1.0 and all(r["speedup"] > 0 for r in result["rows"])
    assert {r["case"] for r in result["rows"]} == {"ae small 32px B=64 L=12"}  # the demo's AE


def test_discriminator_script_compares_one_pass_to_two(tmp_path):
    result = run_script(
        "discriminator",
        "--device=cpu",
        "--halves=8",
        "--width=32",
        "--min-time=0.01",
        tmp_path=tmp_path,
    )
    assert [r["impl"] for r in result["rows"]] == ["two passes (reference)", "one pass (fqvae)"]
    assert result["rows"][0]["speedup"] == 1.0 and result["rows"][1]["speedup"] > 0


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="flush-to-zero is x86 only"
)
def test_subnormals_script_times_both_modes_in_turn(tmp_path):
    result = run_script(
        "subnormals", "--warmup=2", "--batch=8", "--rounds=1", "--min-time=0.01", tmp_path=tmp_path
    )
    rows = result["rows"]
    assert [r["impl"] for r in rows] == ["subnormals kept", "subnormals flushed"]
    assert rows[0]["speedup"] == 1.0 and rows[1]["speedup"] > 0
    assert result["meta"]["threads"] == 1 and result["meta"]["warmup"] == 2


def _fwd_bwd(fn, n: int, k: int, **kw):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 1, generator=g, requires_grad=True)
    cb = torch.randn(k, generator=g, requires_grad=True)

    def call():
        out = fn(z, cb, 1, tau=0.5, seed=3, **kw)
        loss = out.value.sum() + out.kl
        if out.probs is not None:
            loss = loss + out.probs.sum()
        loss.backward()
        z.grad = cb.grad = None

    call()
    return call


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_fused_gumbel_keeps_no_n_by_k_intermediates():
    n, k = 2**18, 64
    nk_mib = n * k * 4 / 2**20  # one fp32 N x K tensor: 64 MiB
    with fqvae.backend("cpp"):
        fused = common.cpu_peak_extra_mb(_fwd_bwd(ops.quantize_gumbel, n, k))
        with_probs = common.cpu_peak_extra_mb(
            _fwd_bwd(ops.quantize_gumbel, n, k, return_probs=True)
        )
    eager = common.cpu_peak_extra_mb(_fwd_bwd(reference.quantize_gumbel, n, k))
    assert eager > 2 * nk_mib, eager
    assert with_probs > nk_mib, with_probs
    assert fused < nk_mib / 4, (fused, with_probs, eager)

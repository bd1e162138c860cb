"""The CUDA backend's sources compile without a GPU: every ``csrc/cuda/*.cu`` with plain nvcc, and
the torch-facing glue (which includes no CUDA header) with ``g++ -fsyntax-only``."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from fqvae.backends import extension

CUDA_DIR = Path(__file__).resolve().parents[1] / "csrc" / "cuda"
CU_SOURCES = sorted(CUDA_DIR.glob("*.cu"))


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)}\nfailed with:\n{result.stderr}{result.stdout}")


def test_sources_exist():
    names = {p.name for p in CU_SOURCES}
    assert {"nearest_forward.cu", "gumbel_forward.cu", "permute.cu", "random.cu"} <= names
    assert (CUDA_DIR / "torch_glue.cpp").exists() and (CUDA_DIR / "launchers.h").exists()


@pytest.mark.parametrize("source", CU_SOURCES, ids=lambda p: p.name)
def test_cu_compiles(source, tmp_path):
    nvcc = extension.nvcc()
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    _run(
        [
            nvcc,
            "-std=c++17",
            "-O3",
            "-arch=sm_90",
            "-Werror",
            "all-warnings",
            "-c",
            str(source),
            "-o",
            str(tmp_path / (source.stem + ".o")),
        ]
    )


def test_glue_syntax():
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    from torch.utils.cpp_extension import include_paths

    includes = [*include_paths(), sysconfig.get_paths()["include"]]
    cmd = [gxx, "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Werror"]
    for path in includes:
        cmd += ["-isystem", path]
    _run([*cmd, "-I", str(CUDA_DIR), str(CUDA_DIR / "torch_glue.cpp")])

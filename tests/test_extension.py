"""The compiled kernels are built on first use against the running PyTorch
(:mod:`fqvae.backends.extension`): parallel processes build once, a missing compiler says so and
how to fix it, ``fqvae doctor`` reports it, and the wheel ships the sources the build needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from fqvae.backends import extension

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )


_USE_CPP = (
    "import torch, fqvae\n"
    "from fqvae.backends import cpp_backend\n"
    "assert 'cpp' in fqvae.available_backends(), fqvae.available_backends()\n"
    "q = fqvae.ops.quantize_nearest(torch.tensor([[0.4]]), torch.tensor([0.0, 1.0]))\n"
    "assert fqvae.backends.select(torch.device('cpu'), torch.float32) is cpp_backend\n"
    "print(q[0].item())\n"
)


def test_cache_folder_is_keyed_by_torch_and_cuda(tmp_path, monkeypatch):
    monkeypatch.setenv("FQVAE_EXTENSION_DIR", str(tmp_path))
    cpu, cuda = extension.build_dir(False), extension.build_dir(True)
    assert cpu.parent == tmp_path and cpu != cuda
    assert cpu.name.startswith(f"torch{torch.__version__}".replace("+", "_"))
    assert extension.build_dir(False) == cpu  # stable: later processes find the build


@pytest.mark.parametrize("with_cuda", [False, True], ids=["cpu", "cuda"])
def test_sources_compile_to_distinct_object_files(with_cuda):
    # torch's ninja build names each object after its source's basename (BASENAME.o, or
    # BASENAME.cuda.o for a .cu file) in one folder, so two sources sharing a basename break the
    # build ("multiple rules generate glue.o"), which a CPU-only machine never runs for CUDA
    sources = extension._sources(extension.source_dir(), with_cuda)
    objects = [p.stem + (".cuda.o" if p.suffix == ".cu" else ".o") for p in sources]
    assert len(set(objects)) == len(objects), sorted(objects)


@pytest.mark.slow
def test_parallel_processes_build_once_then_reuse(tmp_path):
    env = {"FQVAE_EXTENSION_DIR": str(tmp_path), "FQVAE_REQUIRE_EXT": "1"}
    # a build killed earlier leaves torch's own lock file behind; it must not block the next one
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FQVAE_EXTENSION_DIR", str(tmp_path))
        folder = extension.build_dir(extension.cuda_reason() is None)
    folder.mkdir(parents=True)
    (folder / "lock").touch()
    procs = [_python(_USE_CPP, **env) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
        assert out.strip() == "0.0"
    stderr = "".join(err for _, err in outs)
    assert stderr.count("fqvae: compiling the") == 1, stderr
    assert stderr.count("fqvae: built the kernels in") == 1
    again = _python(_USE_CPP, **env)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "compiling" not in err, err


def test_missing_compiler_warns_once_with_the_fix(tmp_path):
    code = (
        "import warnings, torch, fqvae\n"
        "print('cpp' in fqvae.available_backends())\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    for _ in range(3):\n"
        "        fqvae.ops.quantize_nearest(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))\n"
        "print(len(caught)); print(caught[0].message)\n"
    )
    env = {"FQVAE_EXTENSION_DIR": str(tmp_path), "CXX": "/nonexistent/c++", "FQVAE_REQUIRE_EXT": ""}
    out, err = _python(code, **env).communicate(timeout=300)
    lines = out.splitlines()
    assert lines[0] == "False", err
    assert lines[1] == "1"
    assert "no C++ compiler was found" in lines[2] and "apt install g++" in lines[2]


def test_require_ext_makes_a_failed_build_an_error(tmp_path):
    env = {
        "FQVAE_EXTENSION_DIR": str(tmp_path),
        "CXX": "/nonexistent/c++",
        "FQVAE_REQUIRE_EXT": "1",
    }
    proc = _python("import fqvae; fqvae.available_backends()", **env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "ExtensionError: no C++ compiler was found" in err


def _doctor(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fqvae", "doctor"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
        env={**os.environ, **env},
    )


def test_doctor_reports_backends_and_toolchain():
    proc = _doctor()
    assert proc.returncode == 0, proc.stderr
    assert f"torch             {torch.__version__}" in proc.stdout
    assert "cpu cpp           available" in proc.stdout
    assert "compiled kernels  loaded" in proc.stdout
    toolkit = extension.nvcc()  # found even under a CPU build of PyTorch
    assert f"CUDA toolkit      {toolkit or 'not found'}" in proc.stdout


def test_doctor_fails_without_a_compiler(tmp_path):
    proc = _doctor(FQVAE_EXTENSION_DIR=str(tmp_path), CXX="/nonexistent/c++", FQVAE_REQUIRE_EXT="")
    assert proc.returncode == 1
    assert "cpu cpp           no: no C++ compiler was found" in proc.stdout
    assert "apt install g++" in proc.stderr


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_wheel_is_pure_python_with_the_kernel_sources(tmp_path):
    # build from the tracked files alone, in pip's isolated build environment (what `pip install
    # .` does): a stale build/ folder must not leak into the wheel
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout
    for name in files.split():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = wheels.glob("fqvae-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "csrc").rglob("*") if p.is_file()}
    assert {f"fqvae/{s}" for s in sources} <= names
    assert "fqvae/kernels/__init__.py" in names and "fqvae/backends/extension.py" in names
    (metadata,) = (n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert "Requires-Dist: ninja" in text

"""Build script for fqvae: the Python packages plus one compiled extension, ``fqvae._C``.

``fqvae._C`` always holds the C++ CPU kernels (``csrc/cpu``); it also holds the CUDA kernels
(``csrc/cuda``) when PyTorch has CUDA and nvcc is found. Install with PyTorch already present:

    pip install --no-build-isolation .

Environment variables:
    FQVAE_FORCE_CUDA=1    build the CUDA kernels even without a CUDA build of PyTorch
    FQVAE_NO_CUDA=1       never build the CUDA kernels
    FQVAE_REQUIRE_EXT=1   fail the install when the extension cannot be built (for CI); otherwise
                          fqvae installs as pure Python (eager/Triton backends) with a warning
"""

from __future__ import annotations

import os
import sys
from glob import glob

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _warn(message: str) -> None:
    bar = "*" * 78
    print(f"\n{bar}\nfqvae: {message}\n{bar}\n", file=sys.stderr, flush=True)


def _sources(pattern: str) -> list[str]:
    """Source files matching ``pattern`` (relative to this file), sorted, as relative paths."""
    return sorted(os.path.relpath(p, ROOT) for p in glob(os.path.join(ROOT, pattern)))


def _extension_setup() -> dict:
    """``ext_modules`` and ``cmdclass`` for ``fqvae._C``; empty when PyTorch is missing."""
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as exc:
        if _env_flag("FQVAE_REQUIRE_EXT"):
            raise RuntimeError("FQVAE_REQUIRE_EXT=1 but PyTorch is not importable") from exc
        _warn(
            f"PyTorch is not importable ({exc}); installing without the compiled extension. "
            "Install torch first and use `pip install --no-build-isolation .`."
        )
        return {}

    class BuildExt(cpp_extension.BuildExtension):
        """Builds ``fqvae._C``; a failed build leaves a pure-Python install unless required."""

        def run(self) -> None:
            try:
                super().run()
            except Exception as exc:  # compiler missing or failing: fall back to pure Python
                if _env_flag("FQVAE_REQUIRE_EXT"):
                    raise
                _warn(
                    f"building the extension fqvae._C failed ({type(exc).__name__}: {exc}).\n"
                    "fqvae is installed WITHOUT its C++/CUDA kernels and will use the eager "
                    "reference (and Triton on GPUs).\n"
                    "Set FQVAE_REQUIRE_EXT=1 to make this an error."
                )

    with_cuda = not _env_flag("FQVAE_NO_CUDA") and (
        _env_flag("FQVAE_FORCE_CUDA")
        or (torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None)
    )
    # GCC or Clang: the kernels use GCC vector extensions (MSVC builds fall back to pure Python)
    cxx = ["-O3", "-g0", "-fno-math-errno", "-fno-trapping-math"]
    # philox.h carries nvcc's `#pragma unroll`; the kernels' AVX2 vector types live only in
    # always-inline helpers, so GCC's note about their ABI does not apply
    cxx += ["-Wno-unknown-pragmas", "-Wno-psabi"]
    if sys.platform != "darwin":  # Apple clang has no -fopenmp (at::parallel_for runs serially)
        cxx.append("-fopenmp")
    link = ["-fopenmp"] if "-fopenmp" in cxx else []
    sources = _sources("csrc/cpu/*.cpp") + ["csrc/bindings.cpp"]
    kwargs = dict(
        name="fqvae._C",
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_link_args=link,
    )
    ext = None
    if with_cuda:
        try:
            ext = cpp_extension.CUDAExtension(
                sources=sources + _sources("csrc/cuda/*.cu") + _sources("csrc/cuda/*.cpp"),
                define_macros=[("FQVAE_WITH_CUDA", None)],
                extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-lineinfo"]},
                **kwargs,
            )
        except OSError as exc:  # e.g. CUDA_HOME not found
            if _env_flag("FQVAE_REQUIRE_EXT"):
                raise
            _warn(f"cannot set up the CUDA kernels ({exc}); building the CPU kernels only.")
            with_cuda = False
    if ext is None:
        ext = cpp_extension.CppExtension(sources=sources, extra_compile_args={"cxx": cxx}, **kwargs)
    print(f"fqvae: building fqvae._C ({'CPU + CUDA' if with_cuda else 'CPU'} kernels)")
    return {"ext_modules": [ext], "cmdclass": {"build_ext": BuildExt}}


setup(
    packages=find_packages(include=["fqvae", "fqvae.*"]) + ["fqvae.kernels"],
    package_dir={"fqvae.kernels": "kernels"},
    **_extension_setup(),
)

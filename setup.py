"""Build script for fqvae: the Python packages, the Triton kernels (``kernels/`` as
``fqvae.kernels``) and the C++/CUDA kernel sources (``csrc/`` as ``fqvae/csrc``).

The kernels are compiled on first use, against the PyTorch that imports fqvae
(:mod:`fqvae.backends.extension`), not at install time: pip builds in an isolated environment
whose PyTorch would differ from the user's. So ``pip install .`` needs no flags and downloads no
second PyTorch, and the wheel is pure Python.
"""

from setuptools import find_packages, setup

SOURCES = ["*.h", "*.cpp", "*.cuh", "*.cu"]

setup(
    packages=find_packages(include=["fqvae", "fqvae.*"])
    + ["fqvae.kernels", "fqvae.csrc", "fqvae.csrc.cpu", "fqvae.csrc.cuda"],
    package_dir={"fqvae.kernels": "kernels", "fqvae.csrc": "csrc"},
    package_data={name: SOURCES for name in ("fqvae.csrc", "fqvae.csrc.cpu", "fqvae.csrc.cuda")},
)

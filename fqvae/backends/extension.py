"""The compiled kernels, ``fqvae._C``: built on first use against the running PyTorch.

``pip install .`` ships the C++/CUDA sources (``csrc/``) rather than a binary, because a binary
built in pip's isolated build environment would be linked against a different PyTorch. The first
call to :func:`load` compiles them with ``torch.utils.cpp_extension.load`` and ninja into a cache
folder keyed by the PyTorch version, its C++ ABI, the CUDA version and a hash of the sources and
flags, so later processes import the cached build in milliseconds. A file lock makes parallel
processes (DDP ranks, pytest workers) build once; the others wait, then import.

The CUDA kernels are compiled in when PyTorch has CUDA and ``nvcc`` is found (``FQVAE_NO_CUDA=1``
skips them, ``FQVAE_FORCE_CUDA=1`` forces them). ``FQVAE_EXTENSION_DIR`` moves the cache
(default ``$XDG_CACHE_HOME/fqvae`` or ``~/.cache/fqvae``). With ``FQVAE_REQUIRE_EXT=1`` a failed
build is an error instead of a fallback to the eager reference.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import os
import shutil
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch

NAME = "fqvae_C"
CXX_FLAGS = ["-O3", "-g0", "-fno-math-errno", "-fno-trapping-math"]
# philox.h carries nvcc's `#pragma unroll`; the AVX2 vector types live only in always-inline
# helpers, so GCC's note about their ABI does not apply
CXX_FLAGS += ["-Wno-unknown-pragmas", "-Wno-psabi"]
NVCC_FLAGS = ["-O3", "-lineinfo"]
FIX = (
    "install a C++ compiler (Debian/Ubuntu: `apt install g++`; macOS: `xcode-select --install`) "
    "and run `python -m fqvae doctor`"
)


class ExtensionError(RuntimeError):
    """The compiled kernels could not be built or loaded."""


def env_flag(name: str) -> bool:
    """Whether environment variable ``name`` is set to something other than empty/0/false/no."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def source_dir() -> Path:
    """``csrc/``: inside the installed package (``fqvae/csrc``), else beside it in a checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "csrc", package.parent / "csrc"):
        if (candidate / "bindings.cpp").is_file():
            return candidate
    raise ExtensionError(f"the kernel sources are missing (looked in {package / 'csrc'})")


def compiler() -> str | None:
    """The C++ compiler ninja will call (``$CXX``, else ``c++``), as a path, or ``None``."""
    return shutil.which(os.environ.get("CXX", "c++"))


def nvcc() -> str | None:
    """The CUDA compiler: ``nvcc`` on ``PATH``, else ``$CUDA_HOME``, ``$CUDA_PATH`` or
    ``/usr/local/cuda``'s ``bin/nvcc``; ``None`` when none exists. Looked up even under a CPU
    build of PyTorch (whose ``cpp_extension.CUDA_HOME`` is always ``None``)."""
    found = shutil.which("nvcc")
    if found:
        return found
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidate = Path(home) / "bin" / "nvcc"
    return str(candidate) if candidate.is_file() else None


def cuda_reason() -> str | None:
    """Why the CUDA kernels are not compiled in; ``None`` when they are."""
    from torch.utils import cpp_extension

    if env_flag("FQVAE_NO_CUDA"):
        return "FQVAE_NO_CUDA is set"
    if env_flag("FQVAE_FORCE_CUDA"):
        return None
    if torch.version.cuda is None:
        return "this PyTorch is a CPU build"
    if cpp_extension.CUDA_HOME is None:
        return "nvcc was not found (set CUDA_HOME)"
    return None


def _sources(root: Path, with_cuda: bool) -> list[Path]:
    files = sorted(root.glob("cpu/*.cpp")) + [root / "bindings.cpp"]
    if with_cuda:
        files += sorted(root.glob("cuda/*.cu")) + sorted(root.glob("cuda/*.cpp"))
    return files


def _cflags(with_cuda: bool) -> list[str]:
    flags = list(CXX_FLAGS)
    if sys.platform != "darwin":  # Apple clang has no -fopenmp (at::parallel_for runs serially)
        flags.append("-fopenmp")
    if with_cuda:
        flags.append("-DFQVAE_WITH_CUDA")
    return flags


def _ldflags() -> list[str]:
    return ["-fopenmp"] if sys.platform != "darwin" else []


def build_dir(with_cuda: bool) -> Path:
    """The cache folder of this build: PyTorch version, ABI, CUDA and a hash of sources + flags."""
    root = source_dir()
    digest = hashlib.sha256()
    headers = [*root.glob("*.h"), *root.glob("cpu/*.h")]
    if with_cuda:
        headers += [*root.glob("cuda/*.h"), *root.glob("cuda/*.cuh")]
    for path in sorted(set(_sources(root, with_cuda) + headers)):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    digest.update(repr((_cflags(with_cuda), _ldflags(), NVCC_FLAGS)).encode())
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cuda = f"cu{torch.version.cuda}" if with_cuda else "cpu"
    python = sysconfig.get_config_var("SOABI") or f"py{sys.version_info[0]}{sys.version_info[1]}"
    tag = f"torch{torch.__version__}-{python}-abi{abi}-{cuda}-{digest.hexdigest()[:12]}"
    base = os.environ.get("FQVAE_EXTENSION_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fqvae"
    )
    return Path(base) / tag.replace("+", "_")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder/build.lock``; the OS releases it if the holder dies."""
    with open(folder / "build.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"fqvae: waiting for another process to build the kernels in {folder}",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _import_built(folder: Path) -> ModuleType | None:
    """The module built in ``folder`` earlier, or ``None`` when there is none."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    for path in (folder / f"{NAME}{suffix}", folder / f"{NAME}.so"):
        if path.is_file() and not (folder / "build.ninja.partial").exists():
            spec = importlib.util.spec_from_file_location(NAME, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


def _compile(folder: Path, with_cuda: bool) -> ModuleType:
    """Compile the kernels into ``folder`` (the caller holds the lock) and import them."""
    from torch.utils import cpp_extension

    if compiler() is None:
        raise ExtensionError(f"no C++ compiler was found ({os.environ.get('CXX', 'c++')}); {FIX}")
    # ninja comes with the `ninja` package; put its folder (and this interpreter's) on PATH, so a
    # venv that is not activated still finds it
    dirs = [os.path.dirname(sys.executable)]
    with contextlib.suppress(ImportError):
        import ninja

        dirs.insert(0, ninja.BIN_DIR)
    os.environ["PATH"] = os.pathsep.join(dirs + [os.environ.get("PATH", "")])
    # a process killed mid-build leaves torch's own lock file behind; ours is the real lock
    with contextlib.suppress(FileNotFoundError):
        (folder / "lock").unlink()
    what = "C++ and CUDA" if with_cuda else "C++"
    print(
        f"fqvae: compiling the {what} kernels for torch {torch.__version__} (once per torch "
        f"version; about a minute) in {folder}",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    root = source_dir()
    marker = folder / "build.ninja.partial"
    marker.touch()
    try:
        module = cpp_extension.load(
            name=NAME,
            sources=[str(p) for p in _sources(root, with_cuda)],
            extra_cflags=_cflags(with_cuda),
            extra_cuda_cflags=NVCC_FLAGS + (["-DFQVAE_WITH_CUDA"] if with_cuda else []),
            extra_ldflags=_ldflags(),
            extra_include_paths=[str(root)],
            build_directory=str(folder),
            with_cuda=with_cuda,
            verbose=env_flag("FQVAE_VERBOSE_BUILD"),
        )
    except (RuntimeError, OSError, ImportError, SystemExit) as exc:
        detail = str(exc).strip().splitlines()
        raise ExtensionError(
            f"compiling the kernels failed ({detail[-1] if detail else type(exc).__name__}); "
            f"set FQVAE_VERBOSE_BUILD=1 to see the compiler's output, or {FIX}"
        ) from exc
    marker.unlink()
    print(
        f"fqvae: built the kernels in {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return module


def _build(with_cuda: bool) -> ModuleType:
    folder = build_dir(with_cuda)
    module = None
    with contextlib.suppress(ImportError, OSError):
        module = _import_built(folder)  # the common case: built before, no lock needed
    if module is not None:
        return module
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExtensionError(
            f"cannot create the build folder {folder} ({exc.strerror}); set FQVAE_EXTENSION_DIR "
            "to a writable folder"
        ) from exc
    with _locked(folder):
        with contextlib.suppress(ImportError, OSError):
            module = _import_built(folder)  # another process built it while we waited
        return module if module is not None else _compile(folder, with_cuda)


@functools.cache
def _loaded() -> ModuleType | ExtensionError:
    """The compiled kernels, or the error that stopped them; tried once per process."""
    with_cuda = cuda_reason() is None
    try:
        return _build(with_cuda)
    except ExtensionError as exc:
        if not with_cuda:
            return exc
        print(f"fqvae: {exc}; building the C++ CPU kernels only", file=sys.stderr, flush=True)
    try:
        return _build(False)
    except ExtensionError as exc:
        return exc


def load() -> ModuleType:
    """The compiled kernels, built first if needed; raises :class:`ExtensionError`."""
    result = _loaded()
    if isinstance(result, ExtensionError):
        raise result
    return result


def error() -> str | None:
    """Why the compiled kernels are unusable (building them if needed); ``None`` when they work.
    With ``FQVAE_REQUIRE_EXT=1`` a failure raises instead."""
    result = _loaded()
    if not isinstance(result, ExtensionError):
        return None
    if env_flag("FQVAE_REQUIRE_EXT"):
        raise result
    return str(result)

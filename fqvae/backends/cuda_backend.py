"""The CUDA C++ backend: hand-written kernels in ``csrc/cuda``, compiled into the extension on first
use (:mod:`fqvae.backends.extension`).

Each call passes the tensors' device's current stream (as a raw handle) to the extension, making
that device current first when it is not, so the kernels are ordered with the surrounding
PyTorch work. The codebook is converted to float32
for the kernels (it is small) and its gradient cast back to the codebook's dtype.

``permute_forward`` sorts each column's keys in shared memory for batches up to
``fqvae._C.cuda_permute_max_batch`` (8192); larger batches draw the keys with the
``cuda_random_bits`` kernel and sort them with ``torch.argsort(stable=True)`` (the same stable
order), then gather with PyTorch indexing.
"""

from __future__ import annotations

import torch

from fqvae.backends import extension

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_FUNCTIONS = (
    "cuda_nearest_forward",
    "cuda_nearest_backward",
    "cuda_gumbel_forward",
    "cuda_gumbel_backward",
    "cuda_permute_forward",
    "cuda_permute_backward",
    "cuda_random_bits",
)


def _extension():
    """The compiled kernels (only called once :func:`available` has passed)."""
    return extension.load()


def available(device: torch.device) -> str | None:
    device = torch.device(device)
    if device.type != "cuda":
        return f"it runs only on CUDA devices, not {device.type}"
    reason = extension.error()
    if reason is not None:
        return reason
    if not all(hasattr(extension.load(), name) for name in _FUNCTIONS):
        return f"the extension was built without its CUDA kernels ({extension.cuda_reason()})"
    return None


def _call(name: str, device: torch.device, *args):
    """Run ``fqvae._C.<name>(*args, stream)`` with ``device`` current, on its current stream.
    The raw-stream lookup and the guard only when needed keep the host cost per call low."""
    current = torch.cuda.current_device()
    index = current if device.index is None else device.index
    fn = getattr(_extension(), name)
    stream = torch._C._cuda_getCurrentRawStream(index)
    if index == current:
        return fn(*args, stream)
    with torch.cuda.device(index):
        return fn(*args, stream)


def _seed(seed: int) -> int:
    return int(seed) & (2**64 - 1)


def _offset(offset: int) -> int:
    return int(offset) & 0xFFFFFFFF


def nearest_forward(z, codebook, index_dtype):
    return _call("cuda_nearest_forward", z.device, z, codebook, index_dtype)


def nearest_backward(grad_q, coef_z, coef_c, z, codebook, idx):
    return _call("cuda_nearest_backward", z.device, grad_q, coef_z, coef_c, z, codebook, idx)


def gumbel_forward(z, codebook, tau, seed, offset, hard, return_probs):
    value, idx, kl, probs = _call(
        "cuda_gumbel_forward",
        z.device,
        z,
        codebook,
        float(tau),
        _seed(seed),
        _offset(offset),
        bool(hard),
        bool(return_probs),
    )
    return value, idx, kl, probs if return_probs else None


def gumbel_backward(grad_value, grad_kl, grad_probs, z, codebook, tau, seed, offset):
    return _call(
        "cuda_gumbel_backward",
        z.device,
        grad_value,
        grad_kl,
        grad_probs,
        z,
        codebook,
        float(tau),
        _seed(seed),
        _offset(offset),
    )


def permute_forward(x, seed, offset):
    batch, columns = x.shape[0], x.shape[1]
    if batch <= _extension().cuda_permute_max_batch:
        return _call("cuda_permute_forward", x.device, x, _seed(seed), _offset(offset))
    keys = random_bits(columns, batch, seed, offset, x.device)
    perm = torch.argsort(keys, dim=1, stable=True).T.contiguous()
    return x[perm, torch.arange(columns, device=x.device)], perm


def permute_backward(grad, perm):
    return _call("cuda_permute_backward", grad.device, grad.contiguous(), perm)


def random_bits(rows, cols, seed, offset, device):
    device = torch.device(device)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _call(
        "cuda_random_bits", device, int(rows), int(cols), _seed(seed), _offset(offset), device.index
    )

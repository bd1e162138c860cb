"""Compile every Triton kernel ahead of time for a GPU target, with the exact arguments, tile
sizes and ``num_warps`` its launcher chooses, on a machine without a GPU.

Each launcher runs on CPU tensors with its kernels swapped for recorders, so nothing executes;
each recorded launch is then lowered by Triton's real compiler (TTIR, TTGIR, LLVM, PTX and
``ptxas``) for the target. The interpreter that runs the kernels on CPU skips all of that, so
this catches what only a GPU build would: unsupported types, layouts and lowering errors.

Run as a script without ``TRITON_INTERPRET`` (``python tests/triton_aot.py [ARCH]``, default
90 for Hopper); prints one line per compiled launch and exits non-zero on the first failure.
"""

from __future__ import annotations

import os
import sys

import torch

if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("run without TRITON_INTERPRET=1: the interpreter cannot compile kernels")

import triton  # noqa: E402
from fqvae.kernels import gumbel, nearest, permute, philox  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

POINTER = {
    torch.float32: "*fp32",
    torch.float16: "*fp16",
    torch.bfloat16: "*bf16",
    torch.float64: "*fp64",
    torch.int64: "*i64",
    torch.int32: "*i32",
    torch.int16: "*i16",
    torch.uint8: "*u8",
    torch.int8: "*i8",
}


class Recorder:
    """Stands in for a ``@triton.jit`` kernel: ``kernel[grid](*args, **kw)`` records the call."""

    def __init__(self, fn: triton.JITFunction) -> None:
        self.fn, self.calls = fn, []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((args, kwargs))


def scalar_type(value) -> str:
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return "i32"
        return "u32" if value < 2**32 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for {value!r}")


def compile_call(fn: triton.JITFunction, args: tuple, kwargs: dict, target: GPUTarget):
    """Lower one recorded launch of ``fn`` for ``target``; returns the compiled kernel."""
    options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages") if k in kwargs}
    values = dict(zip(fn.arg_names, args)) | kwargs
    signature, constexprs = {}, {}
    for param in fn.params:
        value = values[param.name]
        if param.is_constexpr or value is None:
            signature[param.name], constexprs[param.name] = "constexpr", value
        elif isinstance(value, torch.Tensor):
            signature[param.name] = POINTER[value.dtype]
        else:
            signature[param.name] = scalar_type(value)
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    return triton.compile(source, target=target, options=options)


def launches():
    """Call every launcher over the dtypes and codebook sizes the backend supports."""
    g = torch.Generator().manual_seed(0)
    coef = torch.tensor(0.5)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for (m, d), rows, k in (((300, 12), 12, 64), ((4096, 16), 1, 16), ((7, 3), 3, 256)):
            z = torch.randn(m, d, generator=g).to(dtype)
            cb = torch.randn(rows, k, generator=g)
            for index_dtype in (torch.int64, torch.uint8):
                nearest.nearest_forward(z, cb, index_dtype)
            idx = torch.zeros(m, d, dtype=torch.int32)
            nearest.nearest_backward(z, coef, coef, z, cb, idx)
            nearest.nearest_backward(None, coef, coef, z, cb, idx)
            gumbel.gumbel_forward(z, cb, 0.5, 2**40 + 3, 7, False, True)
            gumbel.gumbel_forward(z, cb, 0.5, 1, 0, True, False)
            probs = torch.randn(m, d, k, generator=g).to(dtype)
            gumbel.gumbel_backward(z, coef, probs, z, cb, 0.5, 1, 0)
            gumbel.gumbel_backward(z, None, None, z, cb, 0.5, 1, 0)
        for batch in (256, 4096):
            x = torch.randn(batch, 12, 64, generator=g).to(dtype)
            permute.permute_forward(x, 3, 0)
            permute.permute_backward(x, torch.zeros(batch, 12, dtype=torch.int64))
    philox.random_bits(12, 300, 2**63 + 5, 1, "cpu")


def main(arch: int) -> int:
    target = GPUTarget("cuda", arch, 32)
    modules = (nearest, gumbel, permute, philox)
    recorders = {}
    for module in modules:
        for name, obj in vars(module).items():
            if isinstance(obj, triton.JITFunction) and name.endswith("_kernel"):
                recorders[(module, name)] = rec = Recorder(obj)
                setattr(module, name, rec)
    launches()
    seen = set()
    for (module, name), rec in recorders.items():
        setattr(module, name, rec.fn)
        if not rec.calls:
            print(f"FAIL {name}: no launcher called it", flush=True)
            return 1
        for args, kwargs in rec.calls:
            kernel = compile_call(rec.fn, args, dict(kwargs), target)
            key = (name, kernel.hash)
            if key in seen:
                continue
            seen.add(key)
            meta = kernel.metadata
            print(
                f"ok sm_{arch} {name} warps={meta.num_warps} shared={meta.shared} "
                f"cubin={len(kernel.asm['cubin'])} bytes",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 90))

"""Tune the nearest-lookup forward kernels on a GPU: time the raw launchers (no op dispatch) of
the Triton kernel for each tile size and of the CUDA kernel, next to a device copy of the same
bytes, with ``triton.testing.do_bench`` (median, CUDA events).

Usage: ``python benchmarks/tune_nearest.py [--codes-per-thread 16,32,64,128,256] [--json PATH]``.
The bytes counted are the ones that must move: z read, q and the int64 index written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from fqvae.backends import cuda_backend, triton_backend  # noqa: E402


def median_ms(fn) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def time_case(shape: tuple[int, int], k: int, codes_per_thread: list[int]) -> tuple[float, dict]:
    """Median ms of a copy of the bytes that must move, and of each launcher variant."""
    device = torch.device("cuda")
    nearest = triton_backend._kernels().nearest
    default = nearest.fwd_codes_per_thread
    z = torch.randn(shape, device=device).reshape(-1, 1)
    cb = torch.randn(1, k, device=device)
    src = torch.empty(z.numel() * (4 + 4 + 8) // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy = median_ms(lambda: dst.copy_(src))
    variants = {}
    for per_thread in codes_per_thread:
        nearest.fwd_codes_per_thread = lambda k_pad, n=per_thread: n
        variants[f"triton codes/thread={per_thread}"] = median_ms(
            lambda: nearest.nearest_forward(z, cb, torch.int64)
        )
    nearest.fwd_codes_per_thread = default
    if cuda_backend.available(device) is None:
        variants["cuda"] = median_ms(lambda: cuda_backend.nearest_forward(z, cb, torch.int64))
    return copy, variants


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--codes-per-thread", default="16,32,64,128,256")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()
    codes = [int(v) for v in args.codes_per_thread.split(",")]
    cases = {
        "c: 2^24 elems K=16": ((2**20, 16), 16),
        "b: (32,16,64,64) K=8": ((2**17, 16), 8),
        "b: (32,16,64,64) K=64": ((2**17, 16), 64),
    }
    rows = []
    for label, (shape, k) in cases.items():
        copy, variants = time_case(shape, k, codes)
        print(f"{label}: copy of the same bytes {copy * 1e3:.1f} us")
        for name, ms in variants.items():
            print(f"  {name:28s} {ms * 1e3:8.1f} us  {100 * copy / ms:5.1f}% of copy")
            rows.append({"case": label, "impl": name, "median_ms": ms, "copy_ms": copy})
    if args.json:
        payload = {"meta": common.environment(torch.device("cuda")), "rows": rows}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

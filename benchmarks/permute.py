"""Time ``permute_dims`` (total-correlation sampling) against the reference per-latent
``randperm`` loop and a vectorised ``argsort(rand)`` + gather, on soft one-hots ``(B, L, K)``.

Usage: ``python benchmarks/permute.py [--device cuda] [--batches 256,1024,4096] [--json out.json]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

import fqvae  # noqa: E402
from fqvae import ops  # noqa: E402


def randperm_loop(x: torch.Tensor) -> torch.Tensor:
    """The FactorQVAE/FactorVAE reference: one ``torch.randperm`` per latent."""
    out = torch.empty_like(x)
    for j in range(x.shape[1]):
        out[:, j] = x[torch.randperm(x.shape[0], device=x.device), j]
    return out


def argsort_gather(x: torch.Tensor) -> torch.Tensor:
    """Vectorised: random keys per (b, l), argsort over the batch, one gather."""
    perm = torch.rand(x.shape[:2], device=x.device).argsort(dim=0)
    return torch.gather(x, 0, perm[..., None].expand_as(x))


def fused(name: str):
    def run(x: torch.Tensor) -> torch.Tensor:
        with fqvae.backend(name):
            return ops.permute_dims(x, seed=7)

    return run


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--batches", default="256,1024,4096,16384")
    p.add_argument("--latents", type=int, default=12)
    p.add_argument("--k", type=int, default=64)
    args = p.parse_args()
    device, dtype = torch.device(args.device), common.DTYPES[args.dtype]
    impls = {"per-latent randperm loop": randperm_loop, "argsort(rand) + gather": argsort_gather}
    impls |= {f"fqvae {n}": fused(n) for n in fqvae.available_backends(device) if n != "reference"}
    copy_bw = common.copy_bandwidth_gbps(device, args.min_time)
    rows: list[common.Row] = []
    for batch in (int(b) for b in args.batches.split(",")):
        case = f"({batch},{args.latents},{args.k})"
        for mode in ("fwd", "fwd+bwd"):
            base = None
            for name, fn in impls.items():
                x = torch.randn(batch, args.latents, args.k, device=device, dtype=dtype)
                if mode == "fwd+bwd":
                    x.requires_grad_()
                    grad = torch.ones_like(x)

                    def call(fn=fn, x=x, grad=grad):
                        fn(x).backward(grad)
                        x.grad = None
                else:

                    def call(fn=fn, x=x):
                        with torch.no_grad():
                            return fn(x)

                seconds = common.median_seconds(call, device, args.min_time)
                moved = 2 * x.numel() * x.element_size() * (2 if mode == "fwd+bwd" else 1)
                gbps = moved / seconds / 1e9
                base = base or seconds
                row = common.Row(
                    case=case,
                    impl=name,
                    mode=f"permute {mode}",
                    median_ms=seconds * 1e3,
                    speedup=base / seconds,
                    gbps=gbps,
                    pct_copy_bw=None if copy_bw is None else 100 * gbps / copy_bw,
                    peak_extra_mb=common.peak_extra_mb(call, device),
                    extra=common.kernel_profile(call, device) if args.profile else {},
                )
                rows.append(row)
                print(f"{case} | {name} | {mode}: {common.timing(row)}", flush=True)
    meta = common.environment(device) | {
        "dtype": args.dtype,
        "copy_bandwidth_gbps": copy_bw,
        "speedup_baseline": "per-latent randperm loop",
    }
    common.report(meta, rows, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

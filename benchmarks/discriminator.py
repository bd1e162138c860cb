"""Time the total-correlation discriminator's update (forward, loss and backward of
``fqvae.models.tc.discriminator_terms``) against the same loss computed with one pass per half,
as the reference implementations write it. The discriminator is the spec's (width 1000, depth 4)
on soft one-hots of ``L`` latents with ``K`` values; ``--halves`` sets the rows of each half
(64 under the CPU recipe, 256 under the paper's batch of 512).

Usage: ``python benchmarks/discriminator.py [--device cuda] [--halves 64,256] [--json out.json]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from fqvae import ops  # noqa: E402
from fqvae.models.tc import discriminator_terms  # noqa: E402
from fqvae.nn import TCDiscriminator  # noqa: E402


def two_passes(disc: torch.nn.Module, codes: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """The loss with one discriminator pass on each half."""
    d_real = disc(codes.flatten(1))
    d_perm = disc(ops.permute_dims(other).flatten(1))
    zeros = torch.zeros(len(d_real), dtype=torch.long, device=d_real.device)
    ones = torch.ones(len(d_perm), dtype=torch.long, device=d_perm.device)
    return 0.5 * (F.cross_entropy(d_real, zeros) + F.cross_entropy(d_perm, ones))


def one_pass(disc: torch.nn.Module, codes: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """fqvae's loss: both halves in one discriminator pass."""
    return discriminator_terms(disc, codes, other)["loss"]


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--halves", default="64,256", help="rows per half, comma-separated")
    p.add_argument("--latents", type=int, default=12)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--width", type=int, default=1000)
    args = p.parse_args()
    device, dtype = torch.device(args.device), common.DTYPES[args.dtype]
    torch.manual_seed(0)
    disc = TCDiscriminator(args.latents * args.k, width=args.width).to(device, dtype)
    impls = {"two passes (reference)": two_passes, "one pass (fqvae)": one_pass}
    rows: list[common.Row] = []
    for half in (int(h) for h in args.halves.split(",")):
        case = f"D {args.latents}x{args.k}->{args.width}, 2x{half} rows"
        shape = (half, args.latents, args.k)
        codes = torch.randn(shape, device=device, dtype=dtype).softmax(-1)
        other = torch.randn(shape, device=device, dtype=dtype).softmax(-1)
        base = None
        for name, loss_fn in impls.items():

            def call(loss_fn=loss_fn, codes=codes, other=other):
                disc.zero_grad(set_to_none=True)
                loss_fn(disc, codes, other).backward()

            seconds = common.median_seconds(call, device, args.min_time)
            base = base or seconds
            row = common.Row(
                case=case,
                impl=name,
                mode="disc update fwd+bwd",
                median_ms=seconds * 1e3,
                speedup=base / seconds,
                extra=common.kernel_profile(call, device) if args.profile else {},
            )
            rows.append(row)
            print(f"{case} | {name}: {common.timing(row)}", flush=True)
    meta = common.environment(device) | {
        "dtype": args.dtype,
        "speedup_baseline": "two passes (reference)",
    }
    common.report(meta, rows, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

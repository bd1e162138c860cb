"""Time ``quantize_nearest`` and ``quantize_gumbel``: eager reference, ``torch.compile`` of the
reference, every fqvae backend on the device, and peer layers where installed.

Cases (latent axis ``dim=1``, one global codebook), at ``--size full``:
  a  FactorQVAE shape: z (256, 12), K = 64
  b  tokenizer feature map: z (32, 16, 64, 64), K = 8 and K = 64
  c  bandwidth-bound: 2^24 elements (2^21 on CPU, ``--numel-c``), K = 16

``--size quick``, the default on a CPU, keeps case a and shrinks b to (4, 16, 32, 32) and c to
2^18 elements, so that every implementation, the eager reference included, is timed side by side
within about two minutes; each row's case names the size it timed.

Usage: ``python benchmarks/quantize.py [--device cuda] [--size full] [--cases a,c] [--json F]``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

import fqvae  # noqa: E402
from fqvae import ops, reference  # noqa: E402


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    k: int


def cases(device: torch.device, size: str, numel_c: int | None) -> dict[str, list[Case]]:
    quick = size == "quick"
    n_c = numel_c or (2**18 if quick else 2**24 if device.type == "cuda" else 2**21)
    b = (4, 16, 32, 32) if quick else (32, 16, 64, 64)
    b_name = ",".join(map(str, b))
    return {
        "a": [Case("a: (256,12) K=64", (256, 12), 64)],
        "b": [Case(f"b: ({b_name}) K={k}", b, k) for k in (8, 64)],
        "c": [Case(f"c: 2^{n_c.bit_length() - 1} elems K=16", (n_c // 16, 16), 16)],
    }


def nearest_fn(impl: Callable) -> Callable:
    def run(z, cb):
        out = impl(z, cb, 1, quant_weight=0.01, commit_weight=0.01)
        return out.quantized, out.loss

    return run


def gumbel_fn(impl: Callable) -> Callable:
    def run(z, cb):
        out = impl(z, cb, 1, tau=0.5, seed=1234)
        return out.value, out.kl

    return run


def plain_gumbel(z, codebook, dim, *, tau, seed):
    """Gumbel quantization as commonly written in eager PyTorch: torch's RNG instead of the
    counter-based stream (``seed`` is ignored), full ``N x K`` tensors, autograd backward."""
    zm = z.movedim(dim, -1)[..., None].float()
    logits = -((zm - codebook) ** 2)
    u = torch.rand_like(logits).clamp_(1e-10, 1.0 - 1e-7)
    y = torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)
    q = torch.softmax(logits, dim=-1)
    kl = (q * torch.log(codebook.shape[-1] * q + 1e-10)).sum(-1).mean()
    return reference.GumbelResult(
        (y * codebook).sum(-1).to(z.dtype).movedim(-1, dim), y.argmax(-1), kl, None
    )


def with_backend(name: str, fn: Callable) -> Callable:
    def run(z, cb):
        with fqvae.backend(name):
            return fn(z, cb)

    return run


def peer_impls(op: str, case: Case) -> dict[str, Callable]:
    """vector-quantize-pytorch layers, where installed and where the case fits them."""
    if op != "nearest":
        return {}
    try:
        from vector_quantize_pytorch import FSQ, LatentQuantize
    except ImportError:
        return {}
    d = case.shape[1]
    out: dict[str, Callable] = {}
    try:
        # LatentQuantize enumerates prod(levels) joint codes (an int64 product) when it is built
        latent = LatentQuantize(
            levels=[case.k] * d, dim=d, commitment_loss_weight=0.01, quantization_loss_weight=0.01
        )
    except RuntimeError as exc:
        print(f"skipped vqtorch LatentQuantize on {case.name}: {exc}"[:200], file=sys.stderr)
    else:
        # LatentQuantize is channel-first: (B, D, ...); 2-d latents become (B, D, 1).
        if len(case.shape) == 2:
            out["vqtorch LatentQuantize"] = lambda z, cb, m=latent: _lq(m, z[:, :, None])
        else:
            out["vqtorch LatentQuantize"] = lambda z, cb, m=latent: _lq(m, z)
    # FSQ rounds onto a fixed grid; levels [8,5,5,5] quantize the same number of scalars.
    fsq = FSQ(levels=[8, 5, 5, 5])

    def run_fsq(z, cb, m=fsq):
        q, _ = m(z.reshape(-1, 1, 4))
        return (q,)

    out["vqtorch FSQ [8,5,5,5]"] = run_fsq
    return out


def _lq(module, z):
    q, _, loss = module(z)
    return q, loss


def impls(op: str, device: torch.device, case: Case, compile_gumbel: bool) -> dict[str, Callable]:
    wrap = nearest_fn if op == "nearest" else gumbel_fn
    ref = reference.quantize_nearest if op == "nearest" else reference.quantize_gumbel
    table = {"eager reference": wrap(ref)}
    if op == "nearest" or compile_gumbel:
        table["torch.compile(reference)"] = wrap(torch.compile(ref))
    if op == "gumbel":
        table["plain eager"] = wrap(plain_gumbel)
        table["torch.compile(plain eager)"] = wrap(torch.compile(plain_gumbel))
    fused = ops.quantize_nearest if op == "nearest" else ops.quantize_gumbel
    for name in fqvae.available_backends(device):
        if name != "reference":
            table[f"fqvae {name}"] = with_backend(name, wrap(fused))
    table.update(peer_impls(op, case))
    return table


def bytes_moved(op: str, mode: str, numel: int, itemsize: int) -> int:
    """Bytes that must move: read z, write the value and int64 index; backward reads the
    incoming gradient and z (and the index for nearest) and writes dz."""
    forward = numel * (2 * itemsize + 8)
    backward = numel * (3 * itemsize + (8 if op == "nearest" else 0))
    return forward + (backward if mode == "fwd+bwd" else 0)


def measure(op, mode, case, name, fn, device, dtype, args, eager_s, copy_bw):
    g = torch.Generator(device="cpu").manual_seed(0)
    z = torch.randn(case.shape, generator=g).to(device, dtype)
    cb = torch.randn(case.k, generator=g).to(device)
    if mode == "fwd":

        def call():
            with torch.no_grad():
                return fn(z, cb)
    else:
        z.requires_grad_()
        cb.requires_grad_()
        grads = None

        def call():
            nonlocal grads
            outs = fn(z, cb)
            if grads is None:
                grads = [torch.ones_like(o) for o in outs]
            torch.autograd.backward(outs, grads)
            z.grad = cb.grad = None

    seconds = common.median_seconds(call, device, args.min_time)
    gbps = bytes_moved(op, mode, z.numel(), z.element_size()) / seconds / 1e9
    return common.Row(
        case=case.name,
        impl=name,
        mode=f"{op} {mode}",
        median_ms=seconds * 1e3,
        speedup=None if eager_s is None else eager_s / seconds,
        gbps=gbps,
        pct_copy_bw=None if copy_bw is None else 100 * gbps / copy_bw,
        peak_extra_mb=common.peak_extra_mb(call, device),
        extra=common.kernel_profile(call, device) if args.profile else {},
    )


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--cases", default="a,b,c", help="comma-separated subset of a,b,c")
    p.add_argument("--ops", default="nearest,gumbel")
    p.add_argument("--modes", default="fwd,fwd+bwd")
    p.add_argument(
        "--size",
        choices=["quick", "full"],
        help="case sizes: quick (about 2 minutes on a CPU; the CPU default) or full (the GPU "
        "default; the eager reference takes over a minute per call of case b on a CPU)",
    )
    p.add_argument("--numel-c", type=int, help="elements in case c (overrides --size)")
    p.add_argument("--skip", default="", help="comma-separated implementation names to skip")
    p.add_argument(
        "--compile-reference-gumbel",
        action="store_true",
        help="also time torch.compile of the reference gumbel (its unrolled Philox graph takes "
        "over 7 minutes to compile on a CPU, so it is off by default)",
    )
    args = p.parse_args()
    device, dtype = torch.device(args.device), common.DTYPES[args.dtype]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    copy_bw = common.copy_bandwidth_gbps(device, args.min_time)
    meta = common.environment(device) | {"dtype": args.dtype, "copy_bandwidth_gbps": copy_bw}
    size = args.size or ("full" if device.type == "cuda" else "quick")
    meta["size"] = size
    all_cases = cases(device, size, args.numel_c)
    if unknown := set(args.cases.split(",")) - set(all_cases):
        p.error(f"--cases: unknown case(s) {sorted(unknown)}; choose from a,b,c")
    picked = [case for key in args.cases.split(",") for case in all_cases[key]]
    tables = {
        (case, op): impls(op, device, case, args.compile_reference_gumbel)
        for case in picked
        for op in args.ops.split(",")
    }
    grid = [(case, op, mode) for case, op in tables for mode in args.modes.split(",")]
    rows: list[common.Row] = []
    bar = tqdm(total=sum(len(set(tables[c, o]) - skip) for c, o, _ in grid), unit="row")
    for case, op, mode in grid:
        eager_s = None
        for name, fn in tables[case, op].items():
            if name in skip:
                continue
            bar.set_description(f"{case.name} {op} {mode} {name}")
            try:
                row = measure(
                    op,
                    mode,
                    case,
                    name,
                    fn,
                    device,
                    dtype,
                    args,
                    eager_s,
                    copy_bw,
                )
            except Exception as exc:  # a peer layer that rejects the case
                bar.write(f"skipped {name} on {case.name} {op} {mode}: {exc}")
                continue
            finally:
                bar.update()
            if name == "eager reference":
                eager_s = row.median_ms / 1e3
                row.speedup = 1.0
            rows.append(row)
            bar.write(f"{row.case} | {row.impl} | {row.mode}: {common.timing(row)}")
            if args.json:  # after every row: a run cut short keeps what it measured
                common.write_json(args.json, meta, rows)
    bar.close()
    common.report(meta, rows, None)  # the JSON was written row by row
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

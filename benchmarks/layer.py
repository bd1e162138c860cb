"""``fqvae.ScalarQuantize`` against the peer layers of ``vector-quantize-pytorch``
(``LatentQuantize``, ``FSQ``) on the same shapes: median forward and forward+backward time, and
(``--facts``) a feature comparison checked by running each layer.

Cases (10 values per latent in every layer):
  vec   (256, 12) vectors, 12 latents
  fmap  (32, 16, 64, 64) channel-first feature map, 16 latent channels

Layers:
  fqvae-qlae     ScalarQuantize(10, D, codebook="per_dim", mode="nearest")    (QLAE)
  fqvae-fqvae    ScalarQuantize(10, codebook="global", mode="gumbel")         (FactorQVAE, training)
  LatentQuantize levels=[10]*4, num_codebooks=D/4 (its implicit product codebook has 10^levels
                 entries, so D latents are split into groups of 4 to keep it at 10^4)
  FSQ            levels=[10]*4, num_codebooks=D/4 (fixed grid, no learned values); vectors are fed
                 as (B, 1, D) because FSQ needs a sequence axis

The peer library is optional (``pip install "fqvae[bench]"``); without it those rows are skipped.

Usage: ``python benchmarks/layer.py [--device cpu] [--dtype float32] [--json out.json] [--facts]``
"""

from __future__ import annotations

import inspect
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

import fqvae  # noqa: E402
from fqvae import backends  # noqa: E402

K = 10
SHAPES = {"vec": (256, 12), "fmap": (32, 16, 64, 64)}


def peer_library():
    """The ``vector_quantize_pytorch`` module, or ``None`` with a message when not installed."""
    try:
        import vector_quantize_pytorch as vqp
    except ImportError:
        print("vector-quantize-pytorch is not installed: skipping LatentQuantize and FSQ "
              "(pip install 'fqvae[bench]')")  # fmt: skip
        return None
    return vqp


def peer_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("vector-quantize-pytorch")
    except Exception:  # noqa: BLE001 - not installed or no metadata
        return None


# ------------------------------------------------------------------------------ the layers


def layers(latents: int, vqp) -> dict[str, tuple[nn.Module, Callable]]:
    """name -> (module, adapter); the adapter maps a ``(B, D, ...)`` input to what the layer
    takes and returns ``(output, aux_loss or None)``."""

    def sq(module):
        def run(x):
            out = module(x)
            return out.quantized, out.loss

        return run

    out: dict[str, tuple[nn.Module, Callable]] = {}
    qlae = fqvae.ScalarQuantize(K, latents, codebook="per_dim", mode="nearest")
    fqv = fqvae.ScalarQuantize(K, codebook="global", mode="gumbel", init="normal", tau=0.5)
    out["fqvae-qlae"] = (qlae, sq(qlae))
    out["fqvae-fqvae"] = (fqv, sq(fqv))
    if vqp is None:
        return out
    groups = latents // 4
    lq = vqp.LatentQuantize(levels=[K] * 4, dim=latents, num_codebooks=groups)

    def run_lq(x):
        o, _, loss = lq(x)
        return o, loss

    fsq = vqp.FSQ(levels=[K] * 4, dim=latents, num_codebooks=groups)

    def run_fsq(x):
        if x.dim() == 2:  # FSQ needs (B, N, D) for vectors
            return fsq(x[:, None])[0][:, 0], None
        return fsq(x)[0], None

    out["LatentQuantize"] = (lq, run_lq)
    out["FSQ"] = (fsq, run_fsq)
    return out


def step_fn(run: Callable, x: torch.Tensor, backward: bool) -> Callable[[], None]:
    def fwd():
        with torch.no_grad():
            run(x)

    def fwd_bwd():
        out, aux = run(x)
        loss = out.float().square().mean()
        if aux is not None:
            loss = loss + aux
        loss.backward()

    return fwd_bwd if backward else fwd


def benchmark(args, vqp) -> list[common.Row]:
    device, dtype = torch.device(args.device), common.DTYPES[args.dtype]
    rows = []
    for case in args.cases.split(","):
        shape = SHAPES[case]
        latents = shape[1]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g).to(device, dtype).requires_grad_()
        for name, (module, run) in layers(latents, vqp).items():
            module.to(device).train()
            label = f"{case}: {tuple(shape)}"
            extra = {"backend": sq_backend(device, dtype) if name.startswith("fqvae") else None}
            for mode, backward in (("fwd", False), ("fwd+bwd", True)):
                try:
                    fn = step_fn(run, x, backward)
                    seconds = common.median_seconds(fn, device, args.min_time)
                except Exception as exc:  # noqa: BLE001 - report, keep going
                    print(f"{label} {name} {mode}: failed ({type(exc).__name__}: {exc})")
                    continue
                rows.append(common.Row(label, name, mode, seconds * 1e3, extra=dict(extra)))
                module.zero_grad(set_to_none=True)
                x.grad = None
    return rows


def _loadavg() -> float | None:
    """The 1-minute load average (other processes competing for the CPU), where available."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def sq_backend(device: torch.device, dtype: torch.dtype) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return backends.select(device, dtype).__name__.rsplit(".", 1)[-1].removesuffix("_backend")


def print_rows(rows: list[common.Row]) -> None:
    """One line per case and layer: fwd and fwd+bwd medians, and fwd+bwd relative to fqvae-qlae."""
    table, base = {}, {}
    for r in rows:
        table.setdefault((r.case, r.impl), {})[r.mode] = r.median_ms
        if r.impl == "fqvae-qlae" and r.mode == "fwd+bwd":
            base[r.case] = r.median_ms
    headers = ["case", "layer", "fwd ms", "fwd+bwd ms", "fwd+bwd / fqvae-qlae"]
    lines = []
    for (case, impl), t in table.items():
        fb = t.get("fwd+bwd")
        rel = f"{fb / base[case]:.2f}x" if fb is not None and case in base else ""
        lines.append(
            [
                case,
                impl,
                f"{t['fwd']:.3f}" if "fwd" in t else "-",
                f"{fb:.3f}" if fb is not None else "-",
                rel,
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))


# ------------------------------------------------------------------------------ the facts


def _try(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a failure is the fact being recorded
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"error: {type(exc).__name__}: {first[:110]}"


def _compile_check(module: nn.Module, run: Callable, x: torch.Tensor) -> str:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    out, aux = compiled(x)
    loss = out.float().square().mean() + (aux if aux is not None else 0)
    loss.backward()
    breaks = sum(counters["graph_break"].values())
    return "yes, no graph break" if breaks == 0 else f"{breaks} graph breaks"


def _ddp_check(module: nn.Module, run: Callable, x: torch.Tensor) -> str:
    """Two steps of DistributedDataParallel (default arguments, 1-process gloo group) around a
    Linear followed by the layer."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(x.shape[-1], x.shape[-1])
            self.quant = module

        def forward(self, t):
            return run(self.lin(t))

    init = tempfile.mktemp(prefix="fqvae-ddp-")
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=0, world_size=1)
    try:
        net = DistributedDataParallel(Net())
        for _ in range(2):
            out, aux = net(x)
            (out.float().square().mean() + (aux if aux is not None else 0)).backward()
        return "yes (default DDP arguments)"
    finally:
        dist.destroy_process_group()
        if os.path.exists(init):
            os.remove(init)


def facts(vqp) -> dict[str, dict[str, str]]:
    """Each property checked by running the layer (CPU, 4 latents, 10 values per latent)."""
    torch.manual_seed(0)
    d = 4

    def make(name):
        if name == "ScalarQuantize":
            m = fqvae.ScalarQuantize(K, d, codebook="per_dim")
            return m, lambda t: (lambda o: (o.quantized, o.loss))(m(t))
        if name == "LatentQuantize":
            m = vqp.LatentQuantize(levels=[K] * d, dim=d)
            return m, lambda t: (lambda o: (o[0], o[2]))(m(t))
        m = vqp.FSQ(levels=[K] * d, dim=d)
        return m, lambda t: (m(t[:, None])[0][:, 0], None) if t.dim() == 2 else (m(t)[0], None)

    names = ["ScalarQuantize"] + (["LatentQuantize", "FSQ"] if vqp is not None else [])
    table: dict[str, dict[str, str]] = {}

    def row(prop: str, fn: Callable[[str], str]) -> None:
        table[prop] = {n: _try(lambda n=n: fn(n)) for n in names}

    def values_grad(n):
        m, run = make(n)
        params = list(m.parameters())
        if not params:
            return "no learned values (fixed grid)"
        out, aux = run(torch.randn(64, d, requires_grad=True))
        (out.square().mean() + (aux if aux is not None else 0)).backward()
        grads = [p.grad for p in params]
        if all(g is None for g in grads):
            return "no: .grad is None after backward"
        total = sum(float(g.abs().sum()) for g in grads if g is not None)
        return f"yes: |grad| = {total:.3g}"

    def per_dim(n):
        if n == "FSQ":
            return "fixed per-latent grid (levels), not learned"
        m, _ = make(n)
        shapes = [tuple(p.shape) for p in m.parameters()]
        return f"yes: parameters {shapes[0]}" + (f" x {len(shapes)}" if len(shapes) > 1 else "")

    def global_cb(n):
        if n == "ScalarQuantize":
            m = fqvae.ScalarQuantize(K, codebook="global")
            m(torch.randn(8, d))
            return f'yes: codebook="global", parameters {[tuple(p.shape) for p in m.parameters()]}'
        if n == "LatentQuantize":
            m = vqp.LatentQuantize(levels=[K], dim=d, num_codebooks=d, codebook_dim=1)
            m(torch.randn(8, d))
            return (
                f"via num_codebooks=D, codebook_dim=1: {len(list(m.parameters()))} value "
                "vector shared by all latents"
            )
        return "no learned codebook"

    def gumbel(n):
        if n == "ScalarQuantize":
            m = fqvae.ScalarQuantize(K, mode="gumbel", tau=0.5)
            out = m(torch.randn(8, d), return_probs=True)
            return f'yes: mode="gumbel", probs {tuple(out.probs.shape)}, KL loss, tau schedule'
        cls = vqp.LatentQuantize if n == "LatentQuantize" else vqp.FSQ
        keys = ("tau", "temp", "gumbel", "soft")
        hits = [p for p in inspect.signature(cls).parameters if any(k in p.lower() for k in keys)]
        return "no (no temperature/Gumbel argument)" if not hits else f"arguments {hits}"

    def dtype_bf16(n):
        m, run = make(n)
        out, _ = run(torch.randn(8, d).bfloat16())
        return f"bf16 in -> {str(out.dtype).removeprefix('torch.')} out"

    def vectors(n):
        m, _ = make(n)
        if n == "FSQ":
            m(torch.randn(8, d))  # raises: FSQ needs (B, N, D)
        else:
            m(torch.randn(8, d))
        return "yes"

    def channel_last(n):
        m, _ = make(n)
        if n == "ScalarQuantize":
            m = fqvae.ScalarQuantize(K, d, codebook="per_dim", dim=-1)
        m(torch.randn(2, 5, 6, d))
        return "yes (dim=-1)" if n == "ScalarQuantize" else "accepted"

    def compile_(n):
        m, run = make(n)
        return _compile_check(m, run, torch.randn(16, d, requires_grad=True))

    def ddp(n):
        m, run = make(n)
        return _ddp_check(m, run, torch.randn(16, d))

    def usage(n):
        m, _ = make(n)
        out = m(torch.randn(8, d)) if n != "FSQ" else m(torch.randn(8, 1, d))
        if isinstance(out, fqvae.QuantizeOutput):
            return "yes: usage counts and perplexity, no host sync"
        return f"no: returns {len(out)} tensors (output, indices{', loss' if len(out) > 2 else ''})"

    def indices(n):
        m, _ = make(n)
        out = m(torch.randn(8, d)) if n != "FSQ" else m(torch.randn(8, 1, d))
        idx = out[1]
        kind = "one per scalar" if idx.shape == (8, d) else "one product index per group"
        return f"{kind}: {tuple(idx.shape)} {str(idx.dtype).removeprefix('torch.')}"

    def eval_loss(n):
        m, run = make(n)
        m.eval()
        with torch.no_grad():
            _, aux = run(torch.randn(8, d) + 0.3)
        return "no aux loss" if aux is None else f"{aux.item():.3g}"

    row("gradient reaches the learned values", values_grad)
    row("per-latent codebook", per_dim)
    row("one global codebook", global_cb)
    row("Gumbel-softmax mode", gumbel)
    row("bf16 input", dtype_bf16)
    row("(B, D) vectors", vectors)
    row("channel-last (B, H, W, D) maps", channel_last)
    row("torch.compile(fullgraph=True) fwd+bwd", compile_)
    row("DDP", ddp)
    row("usage / perplexity outputs", usage)
    row("indices", indices)
    row("aux loss in eval mode", eval_loss)
    return table


def print_facts(table: dict[str, dict[str, str]]) -> None:
    for prop, cells in table.items():
        print(f"- {prop}")
        for name, value in cells.items():
            print(f"    {name:15s} {value}")


# ------------------------------------------------------------------------------ main


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="vec,fmap", help="comma-separated: vec, fmap")
    p.add_argument(
        "--threads",
        default="0",
        help="comma-separated CPU thread counts to time with, e.g. 1,2 (0: PyTorch's default)",
    )
    p.add_argument("--facts", action="store_true", help="also check the feature comparison")
    p.add_argument("--no-timing", action="store_true", help="only the feature comparison")
    args = p.parse_args()
    for case in args.cases.split(","):
        if case not in SHAPES:
            p.error(f"unknown case {case!r}; choose from {sorted(SHAPES)}")
    try:
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    warnings.filterwarnings("ignore", message="fqvae: backend", category=RuntimeWarning)
    vqp = peer_library()
    device, dtype = torch.device(args.device), common.DTYPES[args.dtype]
    meta = common.environment(device)
    meta.update(
        {
            "dtype": args.dtype,
            "fqvae_backend": sq_backend(device, dtype),
            "vector_quantize_pytorch": peer_version() if vqp is not None else None,
            "min_time_s": args.min_time,
            "shapes": {c: list(SHAPES[c]) for c in args.cases.split(",")},
            "values_per_latent": K,
            "loadavg_1min_start": _loadavg(),
        }
    )
    print(
        f"device {meta['device']} | torch {meta['torch']} | threads {meta['threads']} | "
        f"dtype {args.dtype} | fqvae backend {meta['fqvae_backend']} | "
        f"vector-quantize-pytorch {meta['vector_quantize_pytorch']}"
    )
    rows = []
    default_threads = torch.get_num_threads()
    for n in [] if args.no_timing else threads:
        torch.set_num_threads(n if n > 0 else default_threads)
        print(f"\n{torch.get_num_threads()} CPU thread(s):" if device.type == "cpu" else "")
        measured = benchmark(args, vqp)
        for r in measured:
            r.extra["threads"] = torch.get_num_threads()
        print_rows(measured)
        rows += measured
    torch.set_num_threads(default_threads)
    meta["loadavg_1min_end"] = _loadavg()
    if args.facts or args.no_timing:
        table = facts(vqp)
        meta["facts"] = table
        print("\nFeature comparison (each entry checked by running the layer):")
        print_facts(table)
    if args.json:
        common.write_json(args.json, meta, rows)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Shared benchmark plumbing: flags, timing (medians), bandwidth, peak memory, tables and JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.utils.benchmark as tbench

from fqvae.files import atomic_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Row:
    """One measured implementation of one case."""

    case: str
    impl: str
    mode: str
    median_ms: float
    speedup: float | None = None
    gbps: float | None = None
    pct_copy_bw: float | None = None
    peak_extra_mb: float | None = None
    extra: dict = field(default_factory=dict)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    p.add_argument("--device", default=default_device, choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of timing per row")
    p.add_argument(
        "--profile",
        action="store_true",
        help="CUDA: also record each row's GPU kernel time and kernel count (torch.profiler), "
        "which separates the kernels' own time from the host's launch overhead",
    )
    return p


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, min_time: float) -> float:
    """Median wall time of ``fn()`` after warm-up, CUDA-synchronised, via torch.utils.benchmark."""
    fn()
    sync(device)
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_time).median


def kernel_profile(fn: Callable[[], object], device: torch.device, calls: int = 20) -> dict:
    """Per call of ``fn``: the summed duration of the GPU activities it launched (kernels,
    memsets, copies) in ms, and how many there were. Empty off CUDA."""
    if device.type != "cuda":
        return {}
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    fn()
    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        sync(device)
    gpu = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    busy_us = sum(e.time_range.end - e.time_range.start for e in gpu)
    return {"kernel_ms": busy_us / calls / 1e3, "kernels": len(gpu) / calls}


def peak_extra_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak memory taken by one call beyond what was live before it, in MiB.

    CUDA: the caching allocator's peak. CPU (Linux): the peak resident set size, reset through
    ``/proc/self/clear_refs``; ``None`` where that is unavailable.
    """
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return cpu_peak_extra_mb(fn)


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise OSError(f"{field_name} not in /proc/self/status")


def cpu_peak_extra_mb(fn: Callable[[], object]) -> float | None:
    """Peak resident memory of ``fn()`` above the resident size before it (Linux only)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kib("VmRSS")
    except OSError:
        return None
    fn()
    return max(_status_kib("VmHWM") - base, 0) / 1024


def copy_bandwidth_gbps(device: torch.device, min_time: float) -> float | None:
    """Device-to-device copy bandwidth (read + write bytes per second), CUDA only."""
    if device.type != "cuda":
        return None
    src = torch.empty(2**28, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = median_seconds(lambda: dst.copy_(src), device, min_time)
    return 2 * src.numel() / seconds / 1e9


#: the CPU's bf16 matmul instructions, as (name, ``torch.cpu`` probe)
BF16_ISAS = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``) and its bf16 matmul instructions, if any: the
    CPU timings of different machines differ by more than their core counts."""
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        models = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        name = models[0] if models else name
    isas = [isa for isa, probe in BF16_ISAS if getattr(torch.cpu, probe, lambda: False)()]
    return f"{name} ({', '.join(isas)})" if isas else name


def environment(device: torch.device) -> dict:
    info = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def step_row(case: str, impl: str, mode: str, seconds: float, base: float, batch: int) -> Row:
    """A training-step row (median ``seconds`` a step of ``batch`` images, speedup against
    ``base`` seconds, images per second), printed as soon as it is measured."""
    print(f"{mode}, {impl}: {seconds * 1e3:.1f} ms, {batch / seconds:.0f} img/s", flush=True)
    return Row(
        case=case,
        impl=impl,
        mode=mode,
        median_ms=seconds * 1e3,
        speedup=base / seconds,
        extra={"images_per_s": batch / seconds},
    )


def timing(row: Row) -> str:
    """``"1.234 ms"``, plus the GPU kernel time and count when profiled."""
    text = f"{row.median_ms:.3f} ms"
    if "kernel_ms" in row.extra:
        text += f" (GPU kernels {row.extra['kernel_ms']:.3f} ms in {row.extra['kernels']:g})"
    return text


def print_table(rows: list[Row]) -> None:
    headers = ["case", "impl", "mode", "median ms", "vs eager", "GB/s", "% copy BW", "peak MB"]
    table = [
        [
            r.case,
            r.impl,
            r.mode,
            f"{r.median_ms:.3f}",
            "" if r.speedup is None else f"{r.speedup:.1f}x",
            "" if r.gbps is None else f"{r.gbps:.1f}",
            "" if r.pct_copy_bw is None else f"{r.pct_copy_bw:.0f}%",
            "" if r.peak_extra_mb is None else f"{r.peak_extra_mb:.1f}",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)))


def write_json(path: str, meta: dict, rows: list[Row]) -> None:
    """Write results atomically (:func:`fqvae.files.atomic_path`)."""
    payload = {"meta": meta, "rows": [asdict(r) for r in rows]}
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(payload, f, indent=2)


def report(meta: dict, rows: list[Row], json_path: str | None) -> None:
    """Print the run's environment line and the table, and write the JSON when asked."""
    print()
    print(", ".join(f"{k}={v}" for k, v in meta.items()))
    print_table(rows)
    if json_path:
        write_json(json_path, meta, rows)

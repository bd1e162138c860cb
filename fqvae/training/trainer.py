"""The training loop: one function, :func:`train`, run by ``fqvae train`` and ``fqvae demo``.

The model owns its losses, optimizers and schedules (``fqvae.models.base``); this file owns
the loop around them and calls its sibling modules for each job: :mod:`.step` (one batch),
:mod:`.batches` (data, split, deterministic batches), :mod:`.runtime` (devices, precision,
signals), :mod:`.run_folder` (the folder, manifest and checkpoint state) and
:mod:`.evaluation` (metrics and figures).

Batches are a pure function of ``(seed, step)``: the train indices are shuffled once per epoch
by a generator seeded with ``(seed, epoch)`` and consumed in order. Together with the saved
RNG state and optimizer/scheduler state this makes an interrupted and resumed run end with
exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fqvae.data import GroundTruthDataset
from fqvae.locks import FolderInUse, FolderLock
from fqvae.metrics.report import write_json
from fqvae.models.base import DisentanglementModel
from fqvae.nn import CPU_ARCHS
from fqvae.ops import NonFiniteCodebook
from fqvae.training import checkpoint, distributed, model_build, visualize
from fqvae.training.batches import Batches, data_split, load_data
from fqvae.training.checks import check_resolved, validate
from fqvae.training.config import Config, ConfigError
from fqvae.training.evaluation import FIGURE_IMAGES, evaluate, headline
from fqvae.training.logs import Logger, progress_bar
from fqvae.training.run_folder import (
    MANIFEST,
    METRICS,
    check_run_folder,
    checkpoint_state,
    manifest,
    read_metrics,
    restore,
)
from fqvae.training.runtime import (
    StopSignal,
    autocast_for,
    matmul_mode,
    noise_seed,
    pick_device,
    torch_flags,
)
from fqvae.training.step import (
    NonFiniteLoss,
    check_finite,
    estimate_step_seconds,
    scalars,
    train_step,
)


@dataclass
class RunResult:
    out: Path
    step: int
    #: None when training completed, else "signal" (stopped by SIGINT/SIGTERM, checkpoint saved)
    stopped: str | None
    metrics: dict[str, Any]


@dataclass
class _Run:
    """What the phases of :func:`train` share: the resolved run, its state and its outputs."""

    cfg: Config
    out: Path
    dist: distributed.Dist
    device: torch.device
    autocast: Any
    dataset: GroundTruthDataset
    model: DisentanglementModel
    model_kwargs: dict[str, Any]
    opt: Any
    step: int
    held_out_images: Tensor
    logger: Logger | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)
    # seconds of training before the current stretch, earlier parts of the run included (None
    # from a checkpoint that predates keeping them, until _open_outputs reads metrics.json)
    train_s: float | None = 0.0
    stretch_start: float | None = None  # perf_counter where the stretch began, moved on by evals
    saved_step: int = 0

    @property
    def main(self) -> bool:
        return self.dist.is_main

    @property
    def ckpt_path(self) -> Path:
        return self.out / checkpoint.CHECKPOINT

    def elapsed(self) -> float:
        """Seconds of training so far, evaluations excluded, over every part of the run."""
        if self.stretch_start is None:
            return self.train_s
        return self.train_s + time.perf_counter() - self.stretch_start

    def save(self) -> None:
        self.saved_step = self.step
        rngs = distributed.gather_objects(checkpoint.rng_state(self.device), self.dist)
        if self.main:
            state = checkpoint_state(
                self.step, self.model, self.opt, rngs, self.cfg, self.model_kwargs,
                self.elapsed(),
            )  # fmt: skip
            checkpoint.save(state, self.ckpt_path)

    def run_eval(self, num_train: int, num_test: int) -> dict[str, Any]:
        result = {}
        if num_train:
            result = evaluate(
                self.model, self.dataset, self.held_out_images, self.cfg, num_train, num_test,
                self.device,
            )  # fmt: skip
        if self.cfg.eval.images:
            factors = [self.dataset.factor_names[i] for i in self.dataset.latent_factor_indices]
            paths = visualize.save_figures(
                self.model,
                self.held_out_images,
                self.out,
                num_values=self.cfg.model.hparams.get("num_values"),
                nmi=result.get("infomec.nmi"),
                factors=factors,
            )
            for name, path in paths.items():
                self.logger.image(name, path, self.step)
        return result


def train(
    cfg: Config,
    *,
    resume: bool = False,
    overwrite: bool = False,
    dataset: GroundTruthDataset | None = None,
    model: DisentanglementModel | None = None,
    notes: list[str] | None = None,
) -> RunResult:
    """Train ``cfg`` (already resolved by :func:`fqvae.training.presets.resolve`) and return the
    final step and metrics. Writes ``config.json``, ``log.csv``, ``checkpoint.pt``,
    ``metrics.json`` and figures into ``cfg.out``. A folder that already holds a run is refused
    unless ``resume`` (continue it) or ``overwrite`` (remove its files first). ``dataset``/
    ``model`` replace the ones the config names (tests, the demo); ``notes`` are resolution
    warnings for the manifest."""
    lock, dist_info, device, autocast = _claim_folder(cfg, resume, overwrite, model is None)
    with lock, torch_flags(cfg, device):
        run, batches = _prepare(cfg, dist_info, device, autocast, resume, dataset, model)
        _open_outputs(run, resume, notes)
        stop_reason = _loop(run, batches)
        return _finish(run, stop_reason)


def _claim_folder(
    cfg: Config, resume: bool, overwrite: bool, check_names: bool
) -> tuple[contextlib.ExitStack, distributed.Dist, torch.device, Any]:
    """Every check that needs no work (config, devices, precision, the output folder), then
    the folder: its lock taken (a folder another process trains in is refused, before anything
    is removed), an earlier run's files removed when overwriting. Returns the held lock (a
    context that releases it), the ranks, the device and the autocast context."""
    out = Path(cfg.out)
    validate(cfg, check_names=check_names)
    check_resolved(cfg)
    dist_info = distributed.init(
        "cuda" if cfg.system.device != "cpu" and torch.cuda.is_available() else "cpu"
    )
    device = pick_device(cfg, dist_info)
    autocast = autocast_for(cfg, device)
    matmul_mode(cfg, device)
    if cfg.train.batch % (2 * dist_info.world_size):
        raise ConfigError(
            f"train.batch={cfg.train.batch} must be divisible by 2 x "
            f"{dist_info.world_size} processes"
        )
    ckpt_path = out / checkpoint.CHECKPOINT
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    held = check_run_folder(out, resume, overwrite)
    checkpoint.check_writable(out)
    lock = _lock_folder(out, dist_info, device)
    try:
        distributed.barrier(dist_info)  # every rank has looked before the main one removes
        if held and not resume and dist_info.is_main:
            for name in held:
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / "tb", ignore_errors=True)
    except BaseException:
        lock.close()
        raise
    return lock, dist_info, device, autocast


def _lock_folder(
    out: Path, dist_info: distributed.Dist, device: torch.device
) -> contextlib.ExitStack:
    """The run folder's lock, taken by the main rank, as a context that releases it; every
    rank raises :class:`FolderInUse` when another process holds it."""
    held, busy = contextlib.ExitStack(), None
    if dist_info.is_main:
        try:
            held.enter_context(FolderLock(out))
        except FolderInUse as exc:
            busy = exc
    if distributed.any_rank(busy is not None, dist_info, device):
        raise busy or FolderInUse(f"{out} is in use by another process")
    return held


def _prepare(
    cfg: Config,
    dist_info: distributed.Dist,
    device: torch.device,
    autocast: Any,
    resume: bool,
    dataset: GroundTruthDataset,
    model: DisentanglementModel | None,
) -> tuple[_Run, Batches]:
    """Data, model, optimizers and the restored state."""
    out = Path(cfg.out)
    if dataset is None:
        dataset = load_data(cfg.data.name, cfg.data.path, cfg.data.image_size)
    torch.manual_seed(cfg.train.seed)
    if model is None:
        model, model_kwargs = model_build.build(cfg, dataset.observation_shape)
    else:
        model_kwargs = model_build.build_kwargs(cfg, dataset.observation_shape)
    model.to(device)
    if cfg.system.channels_last:
        model.to(memory_format=torch.channels_last)
    distributed.broadcast_state(model, dist_info)
    opt = model.configure_optimizers(
        cfg.train.lr, cfg.train.iterations, fused=cfg.system.fused_optim
    )
    checkpoint.check_writable(out, 3 * checkpoint.state_bytes(model.state_dict()))
    ckpt_path = out / checkpoint.CHECKPOINT
    step, train_s = restore(cfg, ckpt_path, model, opt, dist_info, device) if resume else (0, 0.0)
    if not resume:
        torch.manual_seed(noise_seed(cfg.train.seed, dist_info.rank))
    if cfg.system.compile:
        if model.graph_breaks and dist_info.is_main:
            print(
                f"fqvae train: note: --compile compiles {cfg.model.name} in pieces: "
                f"{model.graph_breaks}",
                file=sys.stderr,
            )
        model.compile()
    train_idx, held_out = data_split(dataset, cfg)
    batches = Batches(train_idx, cfg.train.batch, cfg.train.seed)
    images = dataset.batch(held_out[:FIGURE_IMAGES], device, pixels=model.pixels)
    run = _Run(cfg, out, dist_info, device, autocast, dataset, model, model_kwargs, opt, step,
               images, train_s=train_s, saved_step=step)  # fmt: skip
    return run, batches


def _open_outputs(run: _Run, resume: bool, notes: list[str] | None) -> None:
    """The logger, what an earlier part of the run measured, and the manifest."""
    if not run.main:
        run.train_s = 0.0  # the main rank alone reports it
        return
    run.logger = Logger(run.out, run.cfg.log.tensorboard, run.step if resume else None)
    metrics_file = run.out / METRICS
    previous = read_metrics(metrics_file) if resume and metrics_file.exists() else {}
    run.evals = [
        e
        for e in previous.get("periodic", [])
        if isinstance(e, dict) and isinstance(e.get("step"), int) and e["step"] <= run.step
    ]
    if run.train_s is None:  # a checkpoint from before it kept the time: metrics.json's
        train_s = previous.get("train_s", 0.0)
        run.train_s = float(train_s) if isinstance(train_s, (int, float)) else 0.0
    info = {
        "notes": notes or [],
        "model_kwargs": run.model_kwargs,
        "device": str(run.device),
        "world_size": run.dist.world_size,
        # the rounding of CPU reductions follows the thread count, and a run's result with it
        "cpu_threads": torch.get_num_threads(),
        "resumed_from_step": run.step if resume else None,
        "num_parameters": sum(p.numel() for p in run.model.parameters()),
        "data_source": getattr(run.dataset, "data_source", None),
    }
    write_json(manifest(run.cfg, info), run.out / MANIFEST)


def _warn_slow_cpu(run: _Run, x: Tensor) -> None:
    """A large backbone on a CPU: say what a step costs before step 1."""
    cfg = run.cfg
    slow = run.device.type == "cpu" and cfg.model.arch not in CPU_ARCHS and not cfg.system.compile
    if run.main and slow and run.step < cfg.train.iterations:
        per_step = estimate_step_seconds(run.model, x, cfg.train.batch)
        print(
            f"fqvae train: note: the {cfg.model.arch} backbone on a CPU: about {per_step:.1f} s "
            f"a step here, {per_step * (cfg.train.iterations - run.step) / 3600:.1f} h for this "
            "run (the CPU recipe's small backbone: --recipe cpu, docs/recipes.md)",
            file=sys.stderr,
        )


def _one_step(run: _Run, x: Tensor) -> dict[str, float]:
    """Train on batch ``x``; the logged scalars. Raises :class:`NonFiniteLoss`."""
    if run.cfg.system.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        terms = train_step(run.model, run.opt, x, run.step, run.autocast, run.dist)
    except NonFiniteCodebook as exc:  # the previous update broke a codebook
        raise NonFiniteLoss(
            f"non-finite parameter at step {run.step + 1}: the quantizer's {exc}, after "
            f"the update of step {run.step}; stopped without saving, so the last "
            "checkpoint holds the last good weights"
        ) from None
    values = scalars(terms, run.device)
    run.step += 1
    check_finite(values, run.step)
    return values


def _periodic_eval(run: _Run) -> None:
    """A quick evaluation during training (rank 0), logged and written to ``metrics.json``."""
    if run.main:
        elapsed = run.elapsed()
        result = run.run_eval(run.cfg.eval.num_train, run.cfg.eval.num_test)
        run.evals.append({"step": run.step, **headline(result)})
        run.logger.scalars(run.step, run.evals[-1], kind="eval")
        progress = {"step": run.step, "train_s": elapsed, "periodic": run.evals}
        write_json(progress, run.out / METRICS)
    distributed.barrier(run.dist)


def _loop(run: _Run, batches: Batches) -> str | None:
    """Train to ``train.iterations``; returns ``"signal"`` when stopped by a signal."""
    cfg, stop_reason = run.cfg, None
    run.stretch_start = time.perf_counter()
    bar = progress_bar(cfg.train.iterations, run.step, cfg.log.progress and run.main)
    prefetch = ThreadPoolExecutor(max_workers=1)

    # The loader thread only gathers uint8 images (NumPy): a torch op there would start a
    # second OpenMP team, whose spinning threads took a quarter of FactorQVAE's CPU step.
    def fetch(s: int) -> Tensor:
        return run.dataset.gather(distributed.shard(batches(s), run.dist))

    def pixels(host: Tensor) -> Tensor:
        return run.dataset.to_pixels(host, run.device, run.model.pixels)

    pending = prefetch.submit(fetch, run.step)
    _warn_slow_cpu(run, pixels(pending.result()))
    t_last, step_last = time.perf_counter(), run.step
    try:
        with StopSignal() as stop:
            while run.step < cfg.train.iterations:
                x = pixels(pending.result())
                if run.step + 1 < cfg.train.iterations:
                    pending = prefetch.submit(fetch, run.step + 1)
                values = _one_step(run, x)
                step = run.step
                bar.update(1)
                if run.main and (step % cfg.log.every == 0 or step == cfg.train.iterations):
                    rate = (step - step_last) * cfg.train.batch / (time.perf_counter() - t_last)
                    _log_row(run, bar, values, rate)
                    t_last, step_last = time.perf_counter(), step
                if cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.train.iterations:
                    t_eval = time.perf_counter()
                    _periodic_eval(run)
                    t_last, step_last = time.perf_counter(), step
                    run.stretch_start += t_last - t_eval
                if cfg.log.ckpt_every and step % cfg.log.ckpt_every == 0:
                    run.save()
                if distributed.any_rank(stop.received is not None, run.dist, run.device):
                    stop_reason = "signal"
                    break
            if run.saved_step != run.step or not run.ckpt_path.exists():
                run.save()
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)
        bar.close()
    run.train_s, run.stretch_start = run.elapsed(), None
    return stop_reason


def _log_row(run: _Run, bar: Any, values: dict[str, float], rate: float) -> None:
    lr = run.opt.main[0].param_groups[0]["lr"]
    run.logger.scalars(run.step, {**values, "lr": lr, "images_per_s": rate})
    shown = {"loss": f"{values['loss']:.4g}", "img/s": f"{rate:.0f}"}
    if "tau" in values:
        shown["tau"] = f"{values['tau']:.3g}"
    if "in_use" in values:  # the codebook models: latents whose code varies over the batch
        shown["in use"] = f"{values['in_use']:.0f}/{run.model.num_latents}"
    bar.set_postfix(shown, refresh=False)


def _finish(run: _Run, stop_reason: str | None) -> RunResult:
    """The final evaluation and ``metrics.json``, on rank 0 alone."""
    distributed.barrier(run.dist)
    distributed.shutdown(run.dist)
    final: dict[str, Any] = {}
    if run.main:
        if stop_reason is None:
            final = run.run_eval(run.cfg.eval.final_num_train, run.cfg.eval.final_num_test)
        factors = [run.dataset.factor_names[i] for i in run.dataset.latent_factor_indices]
        write_json(
            {
                "step": run.step,
                "images_seen": run.step * run.cfg.train.batch,
                "train_s": run.train_s,
                "factor_names": factors,
                "final": final,
                "periodic": run.evals,
            },
            run.out / METRICS,
        )
        run.logger.close()
    return RunResult(run.out, run.step, stop_reason, final)

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

import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fqvae.metrics.report import write_json
from fqvae.models.base import DisentanglementModel
from fqvae.ops import NonFiniteCodebook
from fqvae.training import checkpoint, distributed, presets, visualize
from fqvae.training.batches import Batches, data_split, load_data
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
    configure_backends,
    noise_seed,
    pick_device,
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


# data


def build(cfg: Config, dataset: Any) -> tuple[DisentanglementModel, dict[str, Any]]:
    """Build the model of ``cfg`` for ``dataset``; returns it and the ``build_model`` keyword
    arguments (stored in checkpoints, so :func:`load_for_eval` can rebuild it)."""
    from fqvae.models import build_model

    kwargs = presets.model_kwargs(cfg, dataset)
    try:
        model = build_model(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {cfg.model.name!r} rejected its settings: {exc}") from exc
    return model, kwargs


def train(
    cfg: Config,
    *,
    resume: bool = False,
    overwrite: bool = False,
    dataset: Any = None,
    model: DisentanglementModel | None = None,
    notes: list[str] | None = None,
) -> RunResult:
    """Train ``cfg`` (already resolved by :func:`fqvae.training.presets.resolve`) and return the
    final step and metrics. Writes ``config.json``, ``log.csv``, ``checkpoint.pt``,
    ``metrics.json`` and figures into ``cfg.out``. A folder that already holds a run is refused
    unless ``resume`` (continue it) or ``overwrite`` (remove its files first). ``dataset``/
    ``model`` replace the ones the config names (tests, the demo); ``notes`` are resolution
    warnings for the manifest."""
    # -- checks that need no work: config, devices, output folder ------------------------
    out = Path(cfg.out)
    presets.validate(cfg, check_names=model is None)
    dist_info = distributed.init(
        "cuda" if cfg.system.device != "cpu" and torch.cuda.is_available() else "cpu"
    )
    device = pick_device(cfg, dist_info)
    autocast = autocast_for(cfg, device)
    if cfg.train.batch % (2 * dist_info.world_size):
        raise ConfigError(
            f"train.batch={cfg.train.batch} must be divisible by 2 x "
            f"{dist_info.world_size} processes"
        )
    ckpt_path = out / checkpoint.CHECKPOINT
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    held = check_run_folder(out, resume, overwrite)
    distributed.barrier(dist_info)  # every rank has looked before the main one removes
    if held and not resume and dist_info.is_main:
        for name in held:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "tb", ignore_errors=True)
    checkpoint.check_writable(out)
    configure_backends(cfg, device)

    # -- data, model, optimizers, restored state -----------------------------------------
    dataset = (
        dataset
        if dataset is not None
        else load_data(cfg.data.name, cfg.data.path, cfg.data.image_size)
    )
    presets.finalize(cfg, dataset)
    torch.manual_seed(cfg.train.seed)
    if model is None:
        model, model_kwargs = build(cfg, dataset)
    else:
        model_kwargs = presets.model_kwargs(cfg, dataset)
    model.to(device)
    if cfg.system.channels_last:
        model.to(memory_format=torch.channels_last)
    distributed.broadcast_state(model, dist_info)
    opt = model.configure_optimizers(cfg.train.lr, cfg.train.iterations)
    checkpoint.check_writable(out, 3 * checkpoint.state_bytes(model.state_dict()))
    step = restore(cfg, ckpt_path, model, opt, dist_info, device) if resume else 0
    if not resume:
        torch.manual_seed(noise_seed(cfg.train.seed, dist_info.rank))
    if cfg.system.compile:
        model.compile()
    train_idx, held_out = data_split(dataset, cfg)
    batches = Batches(train_idx, cfg.train.batch, cfg.train.seed)
    held_out_images = dataset.batch(held_out[:FIGURE_IMAGES], device, pixels=model.pixels)

    # -- outputs ------------------------------------------------------------------------
    main = dist_info.is_main
    logger = Logger(out, cfg.log.tensorboard, step if resume else None) if main else None
    metrics_file = out / METRICS
    previous = read_metrics(metrics_file) if main and resume and metrics_file.exists() else {}
    evals = [
        e
        for e in previous.get("periodic", [])
        if isinstance(e, dict) and isinstance(e.get("step"), int) and e["step"] <= step
    ]
    if main:
        write_json(
            manifest(
                cfg,
                {
                    "notes": notes or [],
                    "model_kwargs": model_kwargs,
                    "device": str(device),
                    "world_size": dist_info.world_size,
                    "resumed_from_step": step if resume else None,
                    "num_parameters": sum(p.numel() for p in model.parameters()),
                    "data_source": getattr(dataset, "data_source", None),
                },
            ),
            out / MANIFEST,
        )
    saved_step = step

    def save() -> None:
        nonlocal saved_step
        saved_step = step
        rngs = distributed.gather_objects(checkpoint.rng_state(device), dist_info)
        if main:
            checkpoint.save(checkpoint_state(step, model, opt, rngs, cfg, model_kwargs), ckpt_path)

    def run_eval(num_train: int, num_test: int) -> dict[str, Any]:
        result = {}
        if num_train:
            result = evaluate(model, dataset, held_out_images, cfg, num_train, num_test, device)
        if cfg.eval.images:
            paths = visualize.save_figures(
                model, held_out_images, out, num_values=cfg.model.hparams.get("num_values")
            )
            for name, path in paths.items():
                logger.image(name, path, step)
        return result

    # -- the loop -----------------------------------------------------------------------
    stop_reason = None
    train_s = previous.get("train_s", 0.0)
    train_s = float(train_s) if isinstance(train_s, (int, float)) else 0.0
    t_start, eval_s = time.perf_counter(), 0.0
    bar = progress_bar(cfg.train.iterations, step, cfg.log.progress and main)
    prefetch = ThreadPoolExecutor(max_workers=1)

    def fetch(s: int) -> Tensor:
        return dataset.batch(distributed.shard(batches(s), dist_info), device, pixels=model.pixels)

    pending = prefetch.submit(fetch, step)
    slow_cpu = device.type == "cpu" and cfg.model.arch != "small" and not cfg.system.compile
    if main and slow_cpu and step < cfg.train.iterations:
        per_step = estimate_step_seconds(model, pending.result(), cfg.train.batch)
        print(
            f"fqvae train: note: the {cfg.model.arch} backbone on a CPU: about {per_step:.1f} s "
            f"a step here, {per_step * (cfg.train.iterations - step) / 3600:.1f} h for this run "
            "(the CPU recipe's small backbone: --recipe cpu, docs/recipes.md)",
            file=sys.stderr,
        )
    t_last, step_last = time.perf_counter(), step
    try:
        with StopSignal() as stop:
            while step < cfg.train.iterations:
                x = pending.result()
                if step + 1 < cfg.train.iterations:
                    pending = prefetch.submit(fetch, step + 1)
                if cfg.system.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                try:
                    terms = train_step(model, opt, x, step, autocast, dist_info)
                except NonFiniteCodebook as exc:  # the previous update broke a codebook
                    raise NonFiniteLoss(
                        f"non-finite parameter at step {step + 1}: the quantizer's {exc}, after "
                        f"the update of step {step}; stopped without saving, so the last "
                        "checkpoint holds the last good weights"
                    ) from None
                values = scalars(terms, device)
                step += 1
                check_finite(values, step)
                bar.update(1)
                if main and (step % cfg.log.every == 0 or step == cfg.train.iterations):
                    rate = (step - step_last) * cfg.train.batch / (time.perf_counter() - t_last)
                    lr = opt.main[0].param_groups[0]["lr"]
                    logger.scalars(step, {**values, "lr": lr, "images_per_s": rate})
                    shown = {"loss": f"{values['loss']:.4g}", "img/s": f"{rate:.0f}"}
                    if "tau" in values:
                        shown["tau"] = f"{values['tau']:.3g}"
                    bar.set_postfix(shown, refresh=False)
                    t_last, step_last = time.perf_counter(), step
                if cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.train.iterations:
                    t_eval = time.perf_counter()
                    if main:
                        evals.append(
                            {
                                "step": step,
                                **headline(run_eval(cfg.eval.num_train, cfg.eval.num_test)),
                            }
                        )
                        logger.scalars(step, evals[-1], kind="eval")
                        elapsed = train_s + t_eval - t_start - eval_s
                        write_json(
                            {"step": step, "train_s": elapsed, "periodic": evals}, metrics_file
                        )
                    distributed.barrier(dist_info)
                    t_last, step_last = time.perf_counter(), step
                    eval_s += t_last - t_eval
                if cfg.log.ckpt_every and step % cfg.log.ckpt_every == 0:
                    save()
                if distributed.any_rank(stop.received is not None, dist_info, device):
                    stop_reason = "signal"
                    break
            if saved_step != step or not ckpt_path.exists():
                save()
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)
        bar.close()
    train_s += time.perf_counter() - t_start - eval_s

    # -- final evaluation, on rank 0 alone ------------------------------------------------
    distributed.barrier(dist_info)
    distributed.shutdown(dist_info)
    final: dict[str, Any] = {}
    if main:
        if stop_reason is None:
            final = run_eval(cfg.eval.final_num_train, cfg.eval.final_num_test)
        write_json(
            {
                "step": step,
                "images_seen": step * cfg.train.batch,
                "train_s": train_s,
                "factor_names": [dataset.factor_names[i] for i in dataset.latent_factor_indices],
                "final": final,
                "periodic": evals,
            },
            metrics_file,
        )
        logger.close()
    return RunResult(out, step, stop_reason, final)

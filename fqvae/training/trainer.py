"""The training loop: one function, :func:`train`, run by ``fqvae train`` and ``fqvae demo``.

The model owns its losses, optimizers and schedules (``fqvae.models.base``); this file owns
the loop around them: devices and precision, data-parallel ranks, deterministic batches,
logging, checkpoints and resume, evaluation and figures.

Batches are a pure function of ``(seed, step)``: the train indices are shuffled once per epoch
by a generator seeded with ``(seed, epoch)`` and consumed in order. Together with the saved
RNG state and optimizer/scheduler state this makes an interrupted and resumed run end with
exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fqvae.metrics.report import write_json
from fqvae.models.base import DisentanglementModel, Optimizers
from fqvae.models.common import evaluating
from fqvae.ops import NonFiniteCodebook
from fqvae.training import checkpoint, distributed, presets, visualize
from fqvae.training.config import Config, ConfigError
from fqvae.training.distributed import Dist
from fqvae.training.logs import Logger, progress_bar, set_aside

MANIFEST = "config.json"
METRICS = "metrics.json"
# what a run writes into its folder (``--overwrite`` removes exactly these)
RUN_FILES = (
    MANIFEST,
    METRICS,
    checkpoint.CHECKPOINT,
    "log.csv",
    "eval.csv",
    "traversals.png",
    "codebook_usage.png",
)
FIGURE_IMAGES = 512  # images for the codebook-usage histogram and the reconstruction scores


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or infinite; the run stops without saving."""


@dataclass
class RunResult:
    out: Path
    step: int
    #: None when training completed, else "signal" (stopped by SIGINT/SIGTERM, checkpoint saved)
    stopped: str | None
    metrics: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# data


class Batches:
    """Global batch ``step`` = positions ``[step*B, (step+1)*B)`` of an endless stream that
    walks the train indices in a fresh permutation per epoch (seeded by ``(seed, epoch)``)."""

    def __init__(self, indices: np.ndarray, batch: int, seed: int) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch = batch
        self.seed = seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            rng = np.random.default_rng([self.seed, epoch])
            self._perms[epoch] = self.indices[rng.permutation(len(self.indices))]
        return self._perms[epoch]

    def __call__(self, step: int) -> np.ndarray:
        pos = np.arange(step * self.batch, (step + 1) * self.batch, dtype=np.int64)
        epochs, offsets = np.divmod(pos, len(self.indices))
        out = np.empty_like(pos)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            out[mask] = self._perm(int(epoch))[offsets[mask]]
        return out


def load_data(name: str, path: str | None, image_size: int | None = None) -> Any:
    """The dataset ``name`` from the data package (``path``: file or folder, else its lookup),
    area-averaged to ``image_size`` when given."""
    from fqvae import data

    try:
        dataset = data.load(name, path)
        return dataset if image_size is None else data.resize(dataset, image_size)
    except ValueError as exc:
        raise ConfigError(f"dataset {name!r}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# model


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


class Representation(nn.Module):
    """``model.representation`` as the callable the metrics sample from (with its pixels)."""

    def __init__(self, model: DisentanglementModel) -> None:
        super().__init__()
        self.model = model
        self.pixels = model.pixels
        self.image_size = getattr(model, "image_size", None)  # None: the images as they are

    def forward(self, x: Tensor) -> Tensor:
        return self.model.representation(x)


def load_for_eval(
    checkpoint_path: str | Path, device: str | torch.device
) -> tuple[Representation, bool, str]:
    """Rebuild a trained model from a checkpoint for ``fqvae eval``: returns the representation
    function (eval mode, on ``device``), whether its codes are discrete, and the dataset name."""
    from fqvae.models import build_model

    state = checkpoint.load(checkpoint_path)
    model = build_model(**state["model_kwargs"])
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return Representation(model), bool(model.discrete), state["config"]["data"]["name"]


# ---------------------------------------------------------------------------------------------
# one step


def train_step(
    model: DisentanglementModel,
    opt: Optimizers,
    x: Tensor,
    step: int,
    autocast: contextlib.AbstractContextManager,
    dist_info: Dist,
) -> dict[str, Tensor]:
    """The per-batch update of ``fqvae.models.base``: the main step on the whole batch, or on
    its first half followed by the discriminator step on the second half. Gradients are
    averaged across ranks before each optimizer steps. Returns the 0-d loss terms."""
    model.set_step(step)
    # the optimizers tell the split-batch models apart (a class attribute ``discriminator =
    # None`` shadows a submodule assigned in ``__init__``, so ``model.discriminator`` cannot)
    x_main, x_disc = x.chunk(2) if opt.discriminator is not None else (x, None)
    with autocast:
        terms = model(x_main)
    for o in opt.main:
        o.zero_grad(set_to_none=True)
    terms["loss"].backward()
    distributed.average_gradients(_params(opt.main), dist_info)
    model.before_optimizer_step()
    for o in opt.main:
        o.step()
    if x_disc is not None:
        with autocast:
            d_terms = model.discriminator_loss(terms["codes"], x_disc)
        opt.discriminator.zero_grad(set_to_none=True)
        d_terms["loss"].backward()
        distributed.average_gradients(_params([opt.discriminator]), dist_info)
        opt.discriminator.step()
        terms.update({"disc_loss": d_terms["loss"], "disc_acc": d_terms["disc_acc"]})
    for sched in opt.schedulers:
        sched.step()
    return {k: v.detach() for k, v in terms.items() if v.dim() == 0}


def estimate_step_seconds(model: DisentanglementModel, x: Tensor, batch: int) -> float:
    """Seconds one training step of ``batch`` images takes, timed as one forward and backward
    pass of a copy of ``model`` on 8 images of ``x`` and scaled linearly (the run's model, its
    RNG streams and its gradients are untouched)."""
    import copy

    probe = copy.deepcopy(model)
    sample = x[:8]
    with torch.random.fork_rng(devices=[]):
        start = time.perf_counter()
        probe(sample)["loss"].backward()
        elapsed = time.perf_counter() - start
    return elapsed * batch / len(sample)


def _params(optimizers: list[torch.optim.Optimizer]) -> list[nn.Parameter]:
    return [p for o in optimizers for g in o.param_groups for p in g["params"]]


def _all_optimizers(opt: Optimizers) -> list[torch.optim.Optimizer]:
    return opt.main + ([opt.discriminator] if opt.discriminator is not None else [])


def scalars(terms: dict[str, Tensor], device: torch.device) -> dict[str, float]:
    """The 0-d terms as floats, with one device-to-host copy."""
    stacked = torch.stack([t.float().to(device, non_blocking=True) for t in terms.values()])
    return dict(zip(terms, stacked.tolist()))


def check_finite(values: dict[str, float], step: int) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        names = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise NonFiniteLoss(
            f"non-finite loss at step {step}: {names}; stopped without saving, so the last "
            "checkpoint holds the last good weights"
        )


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate(
    model: DisentanglementModel,
    dataset: Any,
    images: Tensor,
    cfg: Config,
    num_train: int,
    num_test: int,
    device: torch.device,
) -> dict[str, Any]:
    """Metrics of ``cfg.eval`` on ``num_train``/``num_test`` sampled points, plus the
    reconstruction MSE on ``images`` (held-out, model pixel space). Does not touch the
    training RNG streams."""
    from fqvae.metrics import evaluate as evaluate_metrics

    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), evaluating(model):
        recon = torch.cat(
            [model.reconstruct(images[i : i + 256]).float() for i in range(0, len(images), 256)]
        )
        result = evaluate_metrics(
            Representation(model),
            dataset,
            metrics=cfg.eval.metrics,
            num_train=num_train,
            num_test=num_test,
            discrete=model.discrete,
            device=device,
            preset=cfg.eval.metric_preset,
            n_jobs=cfg.eval.n_jobs,
            progress=False,
        )
    result.update(reconstruction_scores(recon, images))
    return result


def reconstruction_scores(recon: Tensor, images: Tensor) -> dict[str, float]:
    """``recon.mse`` (mean squared error per pixel) and ``recon.psnr`` (the mean over images of
    ``10 log10(1 / mse_image)`` dB; both pixel conventions span 1) of reconstructions ``recon``
    of ``images``, ``(N, C, H, W)`` in the model's pixel space."""
    per_image = (recon.float() - images.float()).pow(2).flatten(1).mean(1)
    psnr = -10.0 * torch.log10(per_image.clamp_min(1e-10))
    return {"recon.mse": float(per_image.mean()), "recon.psnr": float(psnr.mean())}


@torch.no_grad()
def reconstruct_sample(
    model: DisentanglementModel, dataset: Any, count: int, seed: int, device: torch.device
) -> dict[str, float]:
    """:func:`reconstruction_scores` of ``count`` images of ``dataset`` drawn with ``seed``
    (``fqvae eval``; the trainer scores its held-out images)."""
    rng = np.random.RandomState(seed)
    idx = np.sort(rng.choice(len(dataset), min(count, len(dataset)), replace=False))
    images = dataset.batch(idx, device, pixels=model.pixels)
    with evaluating(model):
        recon = torch.cat(
            [model.reconstruct(images[i : i + 256]).float() for i in range(0, len(images), 256)]
        )
    return reconstruction_scores(recon, images)


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of a metric result (for CSV rows and progress messages)."""
    return {
        k: float(v)
        for k, v in result.items()
        if isinstance(v, (int, float, np.number))
        and not isinstance(v, bool)
        and "." in k
        and not k.endswith("time_s")
    }


# ---------------------------------------------------------------------------------------------
# runtime


def pick_device(cfg: Config, dist_info: Dist) -> torch.device:
    name = cfg.system.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"system.device={cfg.system.device!r} but CUDA is not available")
        if dist_info.enabled:
            device = torch.device("cuda", dist_info.local_rank)
    elif device.type != "cpu":
        raise ConfigError(f"system.device must be auto, cpu or cuda[:N], got {name!r}")
    return device


def autocast_for(cfg: Config, device: torch.device) -> contextlib.AbstractContextManager:
    amp = cfg.system.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "bf16":
        if device.type != "cuda":
            raise ConfigError("system.amp=bf16 needs a CUDA device; use --amp off on CPU")
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_backends(cfg: Config, device: torch.device) -> None:
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = not cfg.train.deterministic
    if cfg.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def noise_seed(seed: int, rank: int) -> int:
    """The seed of a rank's training noise stream (Gumbel noise, permutations)."""
    return int(np.random.SeedSequence([seed, rank, 1]).generate_state(1)[0])


class StopSignal:
    """Turns the first SIGINT/SIGTERM into a request to save and stop after the current step;
    a second one interrupts at once (the atomic writes keep the previous checkpoint)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        print(
            f"\n{signal.Signals(signum).name}: saving a checkpoint after this step "
            "(send again to abort)",
            file=sys.stderr,
        )

    def __enter__(self) -> StopSignal:
        if _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _manifest(cfg: Config, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "config": cfg.to_dict(),
        **info,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "command": sys.argv,
    }


# ---------------------------------------------------------------------------------------------
# the loop


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> list[str]:
    """The run files ``out`` holds; raises ConfigError when ``out`` is a file, or holds a run
    that is neither resumed nor to be overwritten."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a run folder")
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held and not resume and not overwrite:
        raise ConfigError(
            f"--out {out} already holds a run ({', '.join(held[:3])}); continue it with "
            "--resume, or replace it with --overwrite"
        )
    return held


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
    previous = _read_json(metrics_file) if main and resume and metrics_file.exists() else {}
    evals = [
        e
        for e in previous.get("periodic", [])
        if isinstance(e, dict) and isinstance(e.get("step"), int) and e["step"] <= step
    ]
    if main:
        write_json(
            _manifest(
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


def restore(
    cfg: Config,
    path: Path,
    model: nn.Module,
    opt: Optimizers,
    dist_info: Dist,
    device: torch.device,
) -> int:
    """Load the checkpoint at ``path`` into the model, optimizers, schedulers and this rank's
    RNG; returns its step. Raises ConfigError if ``cfg`` changes what the run trains."""
    state = checkpoint.load(path, map_location=device)
    presets.check_resume(cfg, Config.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    for o, s in zip(_all_optimizers(opt), state["optimizers"]):
        o.load_state_dict(s)
    for sched, s in zip(opt.schedulers, state["schedulers"]):
        sched.load_state_dict(s)
    step = int(state["step"])
    if len(state["rng"]) == dist_info.world_size:
        checkpoint.set_rng_state(state["rng"][dist_info.rank], device)
    else:  # a different number of ranks: a fresh noise stream (not bitwise reproducible)
        torch.manual_seed(noise_seed(cfg.train.seed + step, dist_info.rank))
    return step


def checkpoint_state(
    step: int,
    model: nn.Module,
    opt: Optimizers,
    rngs: list[dict[str, Tensor]],
    cfg: Config,
    model_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """Everything a resume needs, as tensors and primitive containers. Raises NonFiniteLoss
    rather than store non-finite weights."""
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteLoss(
            f"non-finite weights at step {step} ({', '.join(bad[:3])}); "
            "the last checkpoint was kept"
        )
    return {
        "step": step,
        "model": {
            k: v.detach().cpu() if isinstance(v, Tensor) else v
            for k, v in model.state_dict().items()
        },
        "model_kwargs": model_kwargs,
        "optimizers": [o.state_dict() for o in _all_optimizers(opt)],
        "schedulers": [s.state_dict() for s in opt.schedulers],
        "rng": [{k: v.cpu() for k, v in r.items()} for r in rngs],
        "config": cfg.to_dict(),
        "world_size": len(rngs),
    }


def data_split(dataset: Any, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Train indices and held-out indices (validation slice; every image for split "all")."""
    if cfg.data.split == "all":
        everything = np.arange(len(dataset), dtype=np.int64)
        held_out = np.random.default_rng(cfg.data.split_seed).permutation(everything)
        return everything, held_out
    train_idx, val_idx, _ = dataset.split(cfg.data.split_seed)
    return train_idx, val_idx


def _read_json(path: Path) -> dict[str, Any]:
    """A run's ``metrics.json`` on resume; an unreadable one is set aside (``.broken``) with a
    warning and read as empty, so it cannot block the resume."""
    import json

    try:
        with open(path) as f:
            data = json.load(f)
        if isinstance(data, dict):
            return data
        reason = f"a JSON {type(data).__name__}, not an object"
    except (ValueError, UnicodeDecodeError) as exc:
        reason = str(exc)
    broken = set_aside(path)
    print(
        f"fqvae train: warning: {path} is unreadable ({reason}); kept as {broken.name}",
        file=sys.stderr,
    )
    return {}

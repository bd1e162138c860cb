"""One training step and its checks: the optimizer calls around a model's loss, DDP gradient
averaging, AMP, the scalars logged, and the non-finite stop."""

from __future__ import annotations

import contextlib
import math
import time

import torch
from torch import Tensor, nn

from fqvae.models.base import DisentanglementModel, Optimizers
from fqvae.training import distributed
from fqvae.training.distributed import Dist


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or infinite; the run stops without saving."""


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


def all_optimizers(opt: Optimizers) -> list[torch.optim.Optimizer]:
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


# evaluation

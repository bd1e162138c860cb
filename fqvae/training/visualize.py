"""Latent traversals and codebook-usage histograms as PNG files (Pillow and numpy only)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageDraw

from fqvae.files import atomic_path
from fqvae.models.base import DisentanglementModel
from fqvae.models.common import evaluating

_PAD = 2
_BACKGROUND = (255, 255, 255)
_BAR = (52, 101, 164)
_TEXT = (0, 0, 0)
#: the NMI a factor needs to name a latent in the traversal labels (below it: "-")
LABEL_NMI = 0.1


def to_uint8(x: torch.Tensor, pixels: str) -> np.ndarray:
    """Model-space pixels ``(n, C, H, W)`` -> RGB uint8 ``(n, H, W, 3)`` (gray repeated)."""
    x = x.detach().float().cpu()
    if pixels == "centered":
        x = x + 0.5
    x = rearrange(x.clamp(0, 1).mul(255).round().to(torch.uint8), "n c h w -> n h w c").numpy()
    return np.repeat(x, 3, axis=3) if x.shape[3] == 1 else x[..., :3]


def tile(images: np.ndarray, pad: int = _PAD) -> np.ndarray:
    """Rows x columns of ``(H, W, 3)`` images ``(R, C, H, W, 3)`` -> one image, white gaps."""
    rows, cols, h, w, _ = images.shape
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            out[y : y + h, x : x + w] = images[r, c]
    return out


@torch.no_grad()
def traversal_grid(model: DisentanglementModel, x: torch.Tensor, steps: int = 10) -> np.ndarray:
    """One row per latent: the input image, its reconstruction, then ``steps`` decodings with
    that latent swept over ``model.traversal_values(steps)`` and the others held at the input's
    values. ``x`` is one image ``(1, C, H, W)`` in the model's pixel convention."""
    with evaluating(model):
        z = model.encode_latents(x[:1])
        values = model.traversal_values(steps).to(z)
        latents = z.shape[1]
        swept = z.repeat(latents * steps, 1)
        rows = torch.arange(latents, device=z.device).repeat_interleave(steps)
        swept[torch.arange(len(swept), device=z.device), rows] = values.reshape(-1)
        decoded = to_uint8(model.decode_latents(swept), model.pixels)
        fixed = to_uint8(torch.cat([x[:1], model.reconstruct(x[:1])]), model.pixels)
    h, w = decoded.shape[1:3]
    grid = np.concatenate(
        [
            np.broadcast_to(fixed, (latents, 2, h, w, 3)),
            rearrange(decoded, "(l s) h w c -> l s h w c", l=latents),
        ],
        axis=1,
    )
    return tile(grid)


def usage_counts(
    codes: np.ndarray, discrete: bool, num_values: int | None = None, bins: int = 20
) -> np.ndarray:
    """Histogram per latent, ``(L, K)``. Index codes: counts of each index, ``K = num_values``
    (default: the largest index + 1). Other discrete codes (quantized values): counts of each
    distinct value in increasing order. Continuous codes: ``bins`` equal-width bins over each
    latent's range."""
    codes = np.asarray(codes)
    if not discrete:
        return np.stack([np.histogram(c, bins=bins)[0] for c in codes.T])
    if not np.array_equal(codes, np.round(codes)) or codes.min() < 0:
        codes = np.stack([np.unique(c, return_inverse=True)[1] for c in codes.T], axis=1)
    k = max(int(codes.max()) + 1, num_values or 0)
    return np.stack([np.bincount(c.astype(np.int64), minlength=k) for c in codes.T])


def usage_image(counts: np.ndarray, width: int = 512, row_height: int = 36) -> np.ndarray:
    """Bar chart per latent (one row each), labelled with the latent and its number of used
    codes, as an RGB uint8 array."""
    latents, k = counts.shape
    label_w, right_w = 36, 90
    bar_w = max(1, width // k)
    img = Image.new("RGB", (label_w + bar_w * k + right_w, latents * row_height + 4), _BACKGROUND)
    draw = ImageDraw.Draw(img)
    for latent, row in enumerate(counts):
        top = 2 + latent * row_height
        base = top + row_height - 4
        draw.text((4, top + row_height // 3), f"z{latent}", fill=_TEXT)
        peak = max(int(row.max()), 1)
        for j, count in enumerate(row):
            height = round((row_height - 8) * count / peak)
            if height:
                x0 = label_w + j * bar_w
                draw.rectangle([x0, base - height, x0 + max(bar_w - 2, 0), base], fill=_BAR)
        draw.line([label_w, base, label_w + bar_w * k, base], fill=_TEXT)
        used = int((row > 0).sum())
        draw.text((label_w + bar_w * k + 6, top + row_height // 3), f"{used}/{k} used", fill=_TEXT)
    return np.asarray(img)


def latent_labels(
    num_latents: int, nmi: np.ndarray | None = None, factors: Sequence[str] = ()
) -> list[str]:
    """One label per latent: ``"z3"``, followed, given the ``(factors, latents)`` NMI matrix and
    the factor names, by the factor it shares the most information with and that NMI
    (``"z3 wall_hue 0.94"``), or ``"-"`` when no factor reaches :data:`LABEL_NMI`."""
    labels = [f"z{j}" for j in range(num_latents)]
    if nmi is None or not len(factors):
        return labels
    nmi = np.asarray(nmi, dtype=float)
    for j in range(num_latents):
        best = int(np.argmax(nmi[:, j]))
        shown = f"{factors[best]} {nmi[best, j]:.2f}" if nmi[best, j] >= LABEL_NMI else "-"
        labels[j] += f" {shown}"
    return labels


def label_rows(image: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """``image`` with a white margin on the left holding ``labels[r]`` beside row ``r`` of its
    equal-height rows (a :func:`tile` grid, scaled or not)."""
    height = image.shape[0] // len(labels)
    width = 8 + 6 * max(len(label) for label in labels)  # the default font: 6 px a character
    margin = Image.new("RGB", (width, image.shape[0]), _BACKGROUND)
    draw = ImageDraw.Draw(margin)
    for r, label in enumerate(labels):
        draw.text((4, r * height + height // 2 - 5), label, fill=_TEXT)
    return np.concatenate([np.asarray(margin), image], axis=1)


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an RGB uint8 array as PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return Path(path)


@torch.no_grad()
def representation_codes(
    model: DisentanglementModel, images: torch.Tensor, batch_size: int = 256
) -> np.ndarray:
    """``model.representation`` of ``images`` in eval mode, ``(n, L)`` numpy."""
    with evaluating(model):
        codes = [
            model.representation(images[i : i + batch_size]).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
    return torch.cat(codes).numpy()


def save_figures(
    model: DisentanglementModel,
    images: torch.Tensor,
    out: str | os.PathLike,
    prefix: str = "",
    steps: int = 10,
    num_values: int | None = None,
    nmi: np.ndarray | None = None,
    factors: Sequence[str] = (),
) -> dict[str, Path]:
    """Write ``{prefix}traversals.png`` (from ``images[0]``, each row labelled by
    :func:`latent_labels`: with ``nmi`` ``(factors, latents)`` and the ``factors``' names, the
    factor each latent holds) and ``{prefix}codebook_usage.png`` (codes of all ``images``;
    ``num_values``: the codebook size) into ``out``."""
    out = Path(out)
    codes = representation_codes(model, images)
    usage = usage_image(usage_counts(codes, model.discrete, num_values))
    grid = traversal_grid(model, images[:1], steps)
    zoom = max(1, 64 // images.shape[-1])  # small images (the CPU recipe's 32 px) drawn at 64
    latents = len(model.traversal_values(steps))
    if nmi is not None and np.shape(nmi) != (len(factors), latents):
        nmi = None  # a representation other than the traversed latents: no factor to name
    labels = latent_labels(latents, nmi, factors)
    grid = label_rows(grid.repeat(zoom, axis=0).repeat(zoom, axis=1), labels)
    return {
        "traversals": save_png(grid, out / f"{prefix}traversals.png"),
        "codebook_usage": save_png(usage, out / f"{prefix}codebook_usage.png"),
    }

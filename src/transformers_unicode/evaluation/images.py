"""Turning what users hold (PIL images, HxWx3 uint8 arrays) into what the metrics compute on."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image


def as_pil(image) -> Image.Image:
    """An RGB PIL image from a PIL image (any mode) or an HxW / HxWx3 uint8 array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(
            f"Expected a PIL image or an HxWx3 uint8 array; got an array of shape {array.shape} and "
            f"dtype {array.dtype}."
        )
    return Image.fromarray(array).convert("RGB")


def as_rgb_array(image) -> np.ndarray:
    """The image as an HxWx3 uint8 array (no copy when it already is one)."""
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] == 3:
            return array
    return np.asarray(as_pil(image))


def pixel_values(images: Sequence) -> torch.Tensor:
    """Images of one size as a float tensor (N, 3, H, W) in [-1, 1], the range the tokenizer works in."""
    arrays = [as_rgb_array(image) for image in images]
    if len({a.shape for a in arrays}) > 1:
        raise ValueError(f"Images of different sizes cannot be stacked: {sorted({a.shape for a in arrays})}.")
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
    return stacked.float() / 127.5 - 1


def score_image_pairs(
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], predictions: Sequence, references: Sequence
) -> np.ndarray:
    """Per-pair scores of a batched image metric (`psnr`, `ssim`), one batch per image size.

    Pairs may differ in size from one another (a dataset of mixed sizes), but each prediction must have the
    size of its reference: a metric on resampled pixels would measure the resampling too.
    """
    if len(predictions) != len(references) or not references:
        raise ValueError(
            f"Need as many predictions as references (>0); got {len(predictions)} and {len(references)}."
        )
    predictions = [as_rgb_array(p) for p in predictions]
    references = [as_rgb_array(r) for r in references]
    by_size: dict[tuple, list[int]] = {}
    for index, (p, r) in enumerate(zip(predictions, references, strict=True)):
        if p.shape != r.shape:
            raise ValueError(
                f"Prediction {index} is {p.shape[:2]} but its reference is {r.shape[:2]} (H, W)."
            )
        by_size.setdefault(p.shape, []).append(index)
    scores = np.empty(len(references), dtype=np.float64)
    for indices in by_size.values():
        batch = metric(
            pixel_values([predictions[i] for i in indices]), pixel_values([references[i] for i in indices])
        )
        scores[indices] = batch.double().numpy()
    return scores


__all__ = ["as_pil", "as_rgb_array", "pixel_values", "score_image_pairs"]

"""scikit-learn's 8x8 handwritten digits as a tiny, download-free image data set.

The 1,797 images ship inside scikit-learn, which makes them a second offline data set for tests and
smoke runs. They are converted to the same convention as the OpenMoji renders: RGB, dark ink on white.
"""

from __future__ import annotations

import time

import datasets
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["DIGITS_SPLITS", "load_digits_images"]

DIGITS_SPLITS = ("train", "test")
_MIN_SIZE = 8
_MAX_INTENSITY = 16.0  # sklearn's digits are 0 (background) .. 16 (full ink)


def _digit_image(pixels: np.ndarray, size: int) -> Image.Image:
    """0..16 ink intensities -> RGB dark-on-white image of size x size (bilinear upscaling)."""
    grey = np.clip(255.0 - pixels * (255.0 / _MAX_INTENSITY), 0, 255).round().astype(np.uint8)
    image = Image.fromarray(grey)
    if size != image.width:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image.convert("RGB")


def load_digits_images(
    split: str | None = "train", size: int = 32, limit: int | None = None
) -> datasets.Dataset:
    """Handwritten digits as a :class:`datasets.Dataset` with columns ``image``, ``label``, ``name``.

    ``split`` is "train", "test" (every 10th image by index: a deterministic 90/10 split) or None for
    all; ``limit`` keeps the first images of the split. ``name`` ("digit 3") is a caption in the same
    style as the OpenMoji names, so both data sets can feed the same captioning code.
    """
    if split is not None and split not in DIGITS_SPLITS:
        raise ValueError(f"Unknown split {split!r}; valid splits are {list(DIGITS_SPLITS)} or None for all.")
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"size must be an int (pixels per side), got {size!r}")
    if size < _MIN_SIZE:
        raise ValueError(f"size must be at least {_MIN_SIZE} pixels per side, got {size}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative int, got {limit!r}")

    start = time.perf_counter()
    bunch = load_digits()
    indices = [i for i in range(len(bunch.target)) if split is None or (split == "test") == (i % 10 == 0)]
    if limit is not None:
        indices = indices[:limit]
    labels = [int(bunch.target[i]) for i in indices]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.Value("int64"), "name": datasets.Value("string")}
    )
    info = datasets.DatasetInfo(
        description=f"scikit-learn 8x8 handwritten digits, inverted to dark ink on white, at {size}x{size} px.",
        homepage="https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
        license="CC BY 4.0",
        features=features,
    )
    dataset = datasets.Dataset.from_dict(
        {
            "image": [_digit_image(bunch.images[i], size) for i in indices],
            "label": labels,
            "name": [f"digit {label}" for label in labels],
        },
        features=features,
        info=info,
        split=datasets.NamedSplit(split) if split is not None else None,
    )
    logger.info(
        "Built %d digit images (split=%s, size=%d) in %.2fs",
        len(indices),
        split,
        size,
        time.perf_counter() - start,
    )
    return dataset

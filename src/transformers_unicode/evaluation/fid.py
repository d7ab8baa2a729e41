"""Fréchet Inception Distance (Heusel et al. 2017), and rFID: the FID of reconstructions against originals.

Both image sets are embedded with the same Inception-v3 network and each cloud of features is summarised by
a Gaussian; FID is the Fréchet (2-Wasserstein) distance between the two Gaussians. The network is read from
a local TorchScript file, the one clean-fid and StyleGAN use, so nothing is downloaded and the features match
theirs (torchvision's Inception port gives different numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from transformers.utils import logging

from .images import as_rgb_array

logger = logging.get_logger(__name__)

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (dim,) and covariance (dim, dim) of a feature cloud (N, dim), the Gaussian FID compares."""
    matrix = np.asarray(features, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) < 2:
        raise ValueError(
            f"Need an (N, dim) array with N >= 2 to estimate a covariance; got shape {matrix.shape}."
        )
    return matrix.mean(axis=0), np.cov(matrix, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    `|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))`.

    The matrix square root is taken with `scipy.linalg.sqrtm`. With fewer samples than dimensions the
    covariances are singular and the root may come out non-finite; then `eps` is added to both diagonals.
    Round-off leaves tiny imaginary parts, which are dropped; large ones mean the inputs are not covariances.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(mu, dtype=np.float64)) for mu in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(sigma, dtype=np.float64)) for sigma in (sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(
            f"Means and covariances do not match: mu {mu1.shape} and {mu2.shape}, sigma {sigma1.shape} and "
            f"{sigma2.shape}."
        )
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        logger.warning(f"FID: singular product of covariances; adding {eps} to the diagonals.")
        offset = np.eye(len(mu1)) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        largest = np.abs(covmean.imag).max()
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"The square root of sigma1 @ sigma2 has an imaginary part of {largest:.3g}.")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@torch.no_grad()
def inception_features(
    images: Sequence,
    inception_path: str | Path,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Inception-v3 pool features (N, 2048) of PIL / HxWx3 uint8 images, from a TorchScript file.

    The file follows the convention of clean-fid and StyleGAN's `inception-2015-12-05.pt`: it is called as
    `model(x, return_features=True)` on float (N, 3, H, W) pixels in [0, 255], and resizes them to 299 x 299
    itself. Images are batched, so they must share a size. `device` defaults to CUDA when there is one.
    """
    path = Path(inception_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No Inception network at {path}. FID needs the TorchScript Inception-v3 that clean-fid and "
            f"StyleGAN use: download {INCEPTION_FILE} ({INCEPTION_URL}) and pass its path as inception_path."
        )
    if len(images) == 0:
        raise ValueError("inception_features needs at least one image.")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = torch.jit.load(str(path), map_location=device).eval()
    features = []
    for begin in range(0, len(images), batch_size):
        arrays = [as_rgb_array(image) for image in images[begin : begin + batch_size]]
        if len({a.shape for a in arrays}) > 1:
            shapes = sorted({a.shape for a in arrays})
            raise ValueError(
                f"Images must share a size to be batched; images {begin}.. have shapes {shapes}."
            )
        x = (
            torch.from_numpy(np.stack(arrays)).to(device).permute(0, 3, 1, 2).float()
        )  # (B, 3, H, W) in [0, 255]
        features.append(model(x, return_features=True).double().cpu())
    return torch.cat(features).numpy()


__all__ = ["INCEPTION_FILE", "feature_statistics", "frechet_distance", "inception_features"]

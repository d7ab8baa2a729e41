"""Reconstruction metrics: PSNR, SSIM and codebook usage, on images in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for pixels in [-1, 1] (peak-to-peak range 2)."""
    mse = (reconstruction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    return (kernel[:, None] * kernel[None, :]).float()


def ssim(
    reconstruction: torch.Tensor, target: torch.Tensor, window_size: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01,
    K2 0.03), computed on [0, 1] intensities channel by channel over the valid region, then averaged."""
    x = (reconstruction.float().clamp(-1, 1) + 1) / 2
    y = (target.float().clamp(-1, 1) + 1) / 2
    channels = x.shape[1]
    window = _gaussian_window(window_size, sigma).to(x.device).expand(channels, 1, window_size, window_size)

    def blur(t):
        return F.conv2d(t, window, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)


@torch.no_grad()
def evaluate_reconstruction(tokenizer, pixel_values: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """PSNR / SSIM of `tokenizer.decode(tokenizer.encode(x).codes)` and the share of visual ids in use."""
    was_training = tokenizer.training
    tokenizer.eval()
    psnrs, ssims, used = [], [], []
    try:
        for start in range(0, pixel_values.shape[0], batch_size):
            batch = pixel_values[start : start + batch_size].to(tokenizer.device)
            codes = tokenizer.encode(batch).codes
            reconstruction = tokenizer.decode(codes)
            psnrs.append(psnr(reconstruction, batch))
            ssims.append(ssim(reconstruction, batch))
            used.append(codes.flatten())
    finally:
        tokenizer.train(was_training)
    distinct = torch.cat(used).unique().numel()
    return {
        "psnr": float(torch.cat(psnrs).mean()),
        "ssim": float(torch.cat(ssims).mean()),
        "codebook_usage": distinct / tokenizer.codebook.num_codes,
        "distinct_codes": distinct,
    }

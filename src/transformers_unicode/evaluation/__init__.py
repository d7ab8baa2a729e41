from .reconstruction import evaluate_reconstruction, psnr, ssim

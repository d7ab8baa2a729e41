"""PSNR between images, as a local `evaluate` metric: `transformers_unicode.evaluation.load_metric("psnr")`."""

import datasets
import evaluate

from transformers_unicode.evaluation.images import score_image_pairs
from transformers_unicode.evaluation.reconstruction import psnr

_DESCRIPTION = """
Peak signal-to-noise ratio, 10 log10(peak^2 / MSE) in dB for 8-bit RGB images (peak 255), computed per
image pair and averaged over pairs. Higher is better; an exact copy scores about 126 dB (the MSE is floored
so that the score stays finite). Each prediction must have the size of its reference.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of images): PIL images, HxWx3 uint8 arrays or image file paths.
    references (`list` of images): the images to compare with, one per prediction, of the same size.
Returns:
    psnr (`float`): the mean over pairs of the per-pair PSNR in dB.
    count (`int`): the number of pairs.
Examples:
    >>> import numpy as np
    >>> from transformers_unicode.evaluation import load_metric
    >>> black = np.zeros((8, 8, 3), dtype=np.uint8)
    >>> load_metric("psnr").compute(predictions=[black + 51], references=[black])["psnr"]  # 20 log10(255 / 51)
    13.979...
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Psnr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Image(), "references": datasets.Image()}),
        )

    def _compute(self, predictions, references):
        scores = score_image_pairs(psnr, predictions, references)
        return {"psnr": float(scores.mean()), "count": len(scores)}

"""SSIM between images, as a local `evaluate` metric: `transformers_unicode.evaluation.load_metric("ssim")`."""

import datasets
import evaluate

from transformers_unicode.evaluation.images import score_image_pairs
from transformers_unicode.evaluation.reconstruction import ssim

_DESCRIPTION = """
Structural similarity (Wang et al. 2004) with the paper's settings: an 11x11 Gaussian window of sigma 1.5,
K1 = 0.01, K2 = 0.03, on intensities in [0, 1], channel by channel over the valid region (no padding), then
averaged over the image and over pairs. 1 means identical. Images must be at least 11 pixels on each side,
and each prediction must have the size of its reference.
"""

_CITATION = """
@article{wang2004image,
  title={Image quality assessment: from error visibility to structural similarity},
  author={Wang, Zhou and Bovik, Alan C. and Sheikh, Hamid R. and Simoncelli, Eero P.},
  journal={IEEE Transactions on Image Processing},
  volume={13},
  number={4},
  pages={600--612},
  year={2004}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of images): PIL images, HxWx3 uint8 arrays or image file paths.
    references (`list` of images): the images to compare with, one per prediction, of the same size.
Returns:
    ssim (`float`): the mean over pairs of the per-pair SSIM.
    count (`int`): the number of pairs.
Examples:
    >>> import numpy as np
    >>> from transformers_unicode.evaluation import load_metric
    >>> image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    >>> load_metric("ssim").compute(predictions=[image], references=[image])["ssim"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Ssim(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Image(), "references": datasets.Image()}),
            reference_urls=["https://ece.uwaterloo.ca/~z70wang/research/ssim/"],
        )

    def _compute(self, predictions, references):
        scores = score_image_pairs(ssim, predictions, references)
        return {"ssim": float(scores.mean()), "count": len(scores)}

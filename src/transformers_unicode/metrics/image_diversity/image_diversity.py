"""Diversity of the images drawn from one prompt, as a local `evaluate` metric:
`transformers_unicode.evaluation.load_metric("image_diversity")`."""

import evaluate

from transformers_unicode.evaluation.metrics import IMAGES_WITH_LABELS
from transformers_unicode.evaluation.retrieval import image_diversity, image_features

_DESCRIPTION = """
How different are the images a model draws from the same prompt with different seeds? Every image is mapped
into a fixed, model-free feature space (an RGB thumbnail of side x side pixels in [0, 1], flattened); per
prompt, the mean pairwise L2 distance between its images is divided by sqrt(dim), making it a root-mean-square
pixel difference in [0, 1]; the result averages this over the prompts with at least two images. 0 means every
seed gave the same image.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of images): generated images (PIL images, HxWx3 uint8 arrays or image file paths).
    references (`list` of `str` or `int`): for each image, the prompt it was drawn from (the prompt text or
        an id); images sharing a reference are compared with one another.
    side (`int`, defaults to 16): the thumbnail side of the feature space.
Returns:
    image_diversity (`float`): the mean over prompts of the RMS pixel difference between their images.
    prompts (`int`): the number of prompts with at least two images.
    count (`int`): the number of images.
Examples:
    >>> import numpy as np
    >>> from transformers_unicode.evaluation import load_metric
    >>> black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    >>> load_metric("image_diversity").compute(predictions=[black, white, black, black], references=[0, 0, 1, 1])
    {'image_diversity': 0.5, 'prompts': 2, 'count': 4}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ImageDiversity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=IMAGES_WITH_LABELS,
        )

    def _compute(self, predictions, references, side=16):
        return image_diversity(image_features(predictions, side), prompt_ids=references)

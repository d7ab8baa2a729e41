"""Top-k retrieval accuracy of generated images among real ones, as a local `evaluate` metric:
`transformers_unicode.evaluation.load_metric("retrieval_accuracy")`."""

import evaluate

from transformers_unicode.evaluation.metrics import IMAGES_WITH_LABELS
from transformers_unicode.evaluation.retrieval import image_features, retrieval_accuracy

_DESCRIPTION = """
Is a generated image closest to a real image of what it was asked to draw? Every image is mapped into a fixed,
model-free feature space (an RGB thumbnail of side x side pixels in [0, 1], flattened) and the candidates are
sorted by L2 distance to each generated image; the rank is the position of the first candidate whose label
is the generated image's label, and top-k accuracy the share of ranks below k (ties count as hits).
With one candidate per label (per-emoji names) it measures "drew that emoji"; with group labels it measures
"drew something of the prompted group", which still means something for prompts held out of training.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of images): generated images (PIL images, HxWx3 uint8 arrays or image file paths).
    references (`list` of `str` or `int`): the label each generated image was prompted with.
    candidates (`list` of images): the real images to retrieve among.
    candidate_labels (`list` of `str` or `int`): one label per candidate; every reference must be among them.
    k (`int` or `tuple` of `int`, defaults to `(1, 5)`): the cut-offs to report.
    side (`int`, defaults to 16): the thumbnail side of the feature space.
Returns:
    top{k} (`float`): one per k, the share of predictions whose label is among the k nearest candidates.
    count (`int`): the number of predictions.
    candidates (`int`): the number of candidates.
Examples:
    >>> import numpy as np
    >>> from transformers_unicode.evaluation import load_metric
    >>> red, blue = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    >>> red[..., 0], blue[..., 2] = 255, 255
    >>> load_metric("retrieval_accuracy").compute(
    ...     predictions=[red], references=["blue"], candidates=[red, blue], candidate_labels=["red", "blue"], k=(1, 2)
    ... )
    {'top1': 0.0, 'top2': 1.0, 'count': 1, 'candidates': 2}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RetrievalAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=IMAGES_WITH_LABELS,
        )

    def _compute(self, predictions, references, candidates=None, candidate_labels=None, k=(1, 5), side=16):
        if candidates is None or candidate_labels is None:
            raise ValueError("retrieval_accuracy needs candidates=[images] and candidate_labels=[labels].")
        return retrieval_accuracy(
            image_features(predictions, side),
            references,
            image_features(candidates, side),
            candidate_labels,
            k,
        )

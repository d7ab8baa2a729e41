"""Exact-match accuracy of short answers, with the baselines that say what it is worth, as a local
`evaluate` metric: `transformers_unicode.evaluation.load_metric("exact_match")`."""

import datasets
import evaluate

from transformers_unicode.evaluation.stage2 import exact_match_accuracy

_DESCRIPTION = """
The share of predictions equal to their reference once case, surrounding whitespace and final "." / "!" are
ignored. Alongside it: balanced accuracy (the mean of the per-class accuracies, classes being the distinct
references), which a model cannot raise by always giving the most frequent answer, and the majority baseline,
the accuracy of doing exactly that.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the answers given.
    references (`list` of `str`): the expected answers, one per prediction.
Returns:
    exact_match (`float`): the share of predictions that match their reference.
    balanced_accuracy (`float`): the mean over distinct references of the accuracy on that reference.
    majority_baseline (`float`): the share of the most frequent reference.
    count (`int`): the number of predictions.
Examples:
    >>> from transformers_unicode.evaluation import load_metric
    >>> load_metric("exact_match").compute(predictions=["Flags.", "flags"], references=["Flags", "Animals"])
    {'exact_match': 0.5, 'balanced_accuracy': 0.5, 'majority_baseline': 0.5, 'count': 2}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        result = exact_match_accuracy(predictions, references)
        return {
            "exact_match": result["accuracy"],
            "balanced_accuracy": result["balanced_accuracy"],
            "majority_baseline": result["majority_baseline"],
            "count": result["count"],
        }

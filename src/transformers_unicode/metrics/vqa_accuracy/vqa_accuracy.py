"""VQAv2 accuracy, as a local `evaluate` metric: `transformers_unicode.evaluation.load_metric("vqa_accuracy")`."""

import datasets
import evaluate

from transformers_unicode.evaluation.vqa import vqa_accuracy

_DESCRIPTION = """
The official VQA accuracy. Answers are normalised as the official VQAv2 evaluation does (punctuation, number
words to digits, articles dropped, apostrophe-less contractions restored, lowercase). Each of the (usually 10)
human answers is left out in turn and the prediction scores min(#matches among the others / 3, 1); a question
scores the mean of these, so 3 or more matching annotators give 1.0, 2 give 0.6 and 1 gives 0.3. A reference
given as a single string counts as ten identical annotations: 1.0 if the normalised answers match, else 0.0.
"""

_CITATION = """
@inproceedings{antol2015vqa,
  title={{VQA}: Visual Question Answering},
  author={Antol, Stanislaw and Agrawal, Aishwarya and Lu, Jiasen and Mitchell, Margaret and Batra, Dhruv and
          Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={International Conference on Computer Vision (ICCV)},
  year={2015}
}
@inproceedings{goyal2017making,
  title={Making the {V} in {VQA} Matter: Elevating the Role of Image Understanding in Visual Question Answering},
  author={Goyal, Yash and Khot, Tejas and Summers-Stay, Douglas and Batra, Dhruv and Parikh, Devi},
  booktitle={Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2017}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): one answer per question.
    references (`list` of `list` of `str`, or `list` of `str`): per question, the human answers (usually 10),
        or a single answer string. Within one `compute` call, use one of the two forms for every question.
Returns:
    vqa_accuracy (`float`): the mean over questions of the per-question score, in [0, 1].
    count (`int`): the number of questions.
Examples:
    >>> from transformers_unicode.evaluation import load_metric
    >>> vqa = load_metric("vqa_accuracy")
    >>> vqa.compute(predictions=["Two."], references=[["2", "2", "3", "3", "3", "3", "3", "3", "3", "3"]])
    {'vqa_accuracy': 0.6, 'count': 1}
    >>> vqa.compute(predictions=["the cat", "dog"], references=["cat", "cat"])
    {'vqa_accuracy': 0.5, 'count': 2}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VqaAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
                ),
            ],
            reference_urls=["https://visualqa.org/evaluation.html"],
        )

    def _compute(self, predictions, references):
        return vqa_accuracy(predictions, references)

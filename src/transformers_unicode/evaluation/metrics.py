"""The metrics as local `evaluate` modules: `load_metric("psnr")` works offline, nothing comes from the Hub.

`evaluate.load(path)` runs the script `path/<name>/<name>.py`; the scripts ship inside this package
(`transformers_unicode/metrics/`) and are thin wrappers over the functions of this `evaluation` package.
"""

from __future__ import annotations

from pathlib import Path

import datasets

METRICS_DIR = Path(__file__).resolve().parent.parent / "metrics"

# The input formats of the metrics that score images against labels (retrieval, diversity): each image
# with a string label or an integer one.
IMAGES_WITH_LABELS = [
    datasets.Features({"predictions": datasets.Image(), "references": datasets.Value("string")}),
    datasets.Features({"predictions": datasets.Image(), "references": datasets.Value("int64")}),
]


def available_metrics() -> list[str]:
    """Names that `load_metric` accepts: the folders of `METRICS_DIR` holding a script of their own name."""
    return sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())


def load_metric(name: str, **kwargs):
    """An `evaluate.EvaluationModule` for one of the metrics shipped here.

    Args:
        name (`str`):
            One of `available_metrics()`: `exact_match`, `frechet_inception_distance`, `image_diversity`,
            `psnr`, `retrieval_accuracy`, `ssim`, `vqa_accuracy`.
        **kwargs:
            Passed to `evaluate.load` (`experiment_id`, `num_process`, `process_id`, `keep_in_memory`, ...).

    Example:

    ```python
    >>> from transformers_unicode.evaluation import load_metric
    >>> load_metric("vqa_accuracy").compute(predictions=["Two."], references=[["2"] * 3 + ["3"] * 7])
    {'vqa_accuracy': 0.9, 'count': 1}
    ```
    """
    try:
        import evaluate
    except ImportError as error:
        raise ImportError(
            "load_metric needs the `evaluate` library: pip install evaluate (or transformers-unicode[train])."
        ) from error
    names = available_metrics()
    if name not in names:
        raise ValueError(f"Unknown metric {name!r}; available: {', '.join(names)}.")
    return evaluate.load(str(METRICS_DIR / name), **kwargs)


__all__ = ["IMAGES_WITH_LABELS", "METRICS_DIR", "available_metrics", "load_metric"]
